"""zerofeed-bench: ``zerofeed bench``, zerofeed against the input pipelines users would otherwise write.

A separate distribution from zerofeed (``pip install ./bench``); the product's ``zerofeed
bench`` command finds it when it is installed.

Modules: :mod:`~zerofeed_bench.cli` (the command line), :mod:`~zerofeed_bench.data` (built-in
images, workload, reference and check), :mod:`~zerofeed_bench.baselines` (every
implementation), :mod:`~zerofeed_bench.runner` (processes, interleaving, memory sampling),
:mod:`~zerofeed_bench.report` (table, JSON, plot), :mod:`~zerofeed_bench.machine` (process
memory from ``/proc``, versions), :mod:`~zerofeed_bench.transfer` (host-to-device GB/s).
"""
