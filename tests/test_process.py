"""Processes and signals (issue 9: 6 and 7): fork() children, multiprocessing, Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import zerofeed as zf

# The fork scenarios run in a fresh interpreter that has only NumPy and zerofeed loaded: the
# test process has JAX's and TensorFlow's thread pools, which make fork() itself unsafe.
FORK = textwrap.dedent(
    """
    import multiprocessing, os, sys
    import numpy as np
    import zerofeed as zf

    def in_child(child):
        report_r, report_w = os.pipe()
        err_r, err_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            status = 0
            try:
                os.dup2(err_w, 2)
                message = child()
            except BaseException as exc:
                message, status = f"raised {type(exc).__name__}: {exc}", 3
            os.write(report_w, message.encode())
            os._exit(status)
        os.close(report_w)
        os.close(err_w)
        report = os.read(report_r, 1 << 16).decode()
        errors = b""
        while chunk := os.read(err_r, 1 << 16):
            errors += chunk
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status), report, errors.decode()

    loader = zf.Loader(np.arange(400).reshape(100, 4), batch_size=4, workers=2, shuffle=True)
    it = iter(loader)
    next(it)

    def child():
        global loader, it
        try:
            next(it)
            return "no error"
        except zf.PipelineError as err:
            assert err.argument == "loader" and "fork" in str(err), str(err)
        try:
            iter(loader)
            return "no error for a new pass"
        except zf.PipelineError:
            pass
        del it, loader  # nothing to join, nothing printed
        fresh = zf.Loader(np.arange(40).reshape(10, 4), batch_size=5, workers=2)
        return f"ok {int(sum(b.sum() for b in fresh))}"

    code, report, errors = in_child(child)
    assert (code, report, errors) == (0, f"ok {sum(range(40))}", ""), (code, report, errors)
    assert next(it).shape == (4, 4)  # the parent's loader is untouched

    def work(n):
        loader = zf.Loader(np.arange(n), batch_size=7, workers=2, shuffle=True, seed=n)
        return int(sum(int(b.sum()) for b in loader))

    with multiprocessing.get_context("fork").Pool(2) as pool:
        sums = pool.map(work, [10, 100, 1000])
    assert sums == [sum(range(n)) for n in (10, 100, 1000)], sums
    print("fork ok")
    """
)


def test_fork_children_get_a_clear_error_from_inherited_loaders_and_new_ones_work():
    done = subprocess.run([sys.executable, "-c", FORK], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert done.stdout.strip() == "fork ok"
    assert "panic" not in done.stderr and "terminate" not in done.stderr, done.stderr


def test_ctrl_c_while_waiting_for_a_batch_arrives_promptly_and_the_loader_survives():
    # One worker resampling 24 images to 1024x1024 float32 a batch (300 MB written): each
    # batch takes far longer (about 50 ms here with the fixed-point resampler) than the
    # interrupt (2 ms) and the binding's signal check (every 10 ms while it waits); the
    # batch buffers are allocated before.
    images = np.zeros((48, 512, 512, 3), np.uint8)
    ops = [zf.Resize(1024, interpolation="bicubic"), zf.Normalize(0.5, 0.25)]
    loader = zf.Loader(images, batch_size=24, workers=1, prefetch=0, ops=ops)
    it = iter(loader)

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        # The timer is armed inside the `with`: armed before it, a pause of 2 ms on the way
        # in (a garbage collection of a process holding torch and TensorFlow takes tens of
        # ms) let the interrupt land outside it, and fail the run.
        with pytest.raises(KeyboardInterrupt):
            started = time.monotonic()
            signal.setitimer(signal.ITIMER_REAL, 0.002)
            next(it)
        waited = time.monotonic() - started
        produced = loader.stats["batches"]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert waited < 0.5
    assert produced == 0, "the interrupt arrived only after the batch was done"
    batch = next(it)  # the same pass goes on after the interrupt
    assert batch.shape == (24, 1024, 1024, 3) and batch.dtype == np.float32
    loader.close()
