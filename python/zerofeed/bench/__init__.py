"""``zerofeed bench``: zerofeed against the input pipelines users would otherwise write.

Modules: :mod:`~zerofeed.bench.data` (built-in images, workload, reference and check),
:mod:`~zerofeed.bench.baselines` (every implementation), :mod:`~zerofeed.bench.runner`
(processes, interleaving, memory sampling), :mod:`~zerofeed.bench.report` (table, JSON,
plot), :mod:`~zerofeed.bench.doctor` (``doctor`` and ``explain``),
:mod:`~zerofeed.bench.machine` (``/proc`` readers).
"""
