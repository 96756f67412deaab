"""Processes and signals (issue 9: 6 and 7): fork() children, multiprocessing, Ctrl-C."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

import numpy as np
import pytest

import zerofeed as zf


def run_in_fork(child) -> tuple[int, str, str]:
    """Runs `child()` in a fork()ed child; returns (exit status, its report, its stderr)."""
    report_r, report_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report through the pipe, exit without pytest's teardown
        status = 0
        try:
            os.dup2(err_w, 2)
            message = child()
        except BaseException as exc:  # noqa: BLE001 - everything must reach the parent
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


def test_an_inherited_loader_raises_in_the_child_and_dropping_it_is_silent():
    loader = zf.Loader(np.arange(400).reshape(100, 4), batch_size=4, workers=2, shuffle=True)
    it = iter(loader)
    next(it)

    def child() -> str:
        nonlocal loader, it
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
        del it, loader  # nothing to join here, nothing printed
        fresh = zf.Loader(np.arange(40).reshape(10, 4), batch_size=5, workers=2)
        total = int(sum(b.sum() for b in fresh))
        return f"ok {total}"

    code, report, errors = run_in_fork(child)
    assert (code, report) == (0, f"ok {sum(range(40))}"), (report, errors)
    assert errors == ""
    assert next(it).shape == (4, 4)  # the parent's loader is untouched


def _sum_in_worker(n: int) -> int:
    loader = zf.Loader(np.arange(n), batch_size=7, workers=2, shuffle=True, seed=n)
    return int(sum(int(b.sum()) for b in loader))


def test_multiprocessing_with_fork_keeps_working():
    parent = zf.Loader(np.arange(50), batch_size=5, workers=2)
    next(iter(parent))  # live workers at the time of the fork
    with multiprocessing.get_context("fork").Pool(2) as pool:
        sums = pool.map(_sum_in_worker, [10, 100, 1000])
    assert sums == [sum(range(n)) for n in (10, 100, 1000)]


def test_ctrl_c_while_waiting_for_a_batch_arrives_promptly_and_the_loader_survives():
    # One worker and big float64 batches: each takes far longer than the interrupt.
    images = np.zeros((32, 1024, 1024, 3), np.uint8)
    loader = zf.Loader(
        images, batch_size=16, workers=1, prefetch=0, ops=[zf.Normalize(0.5, 0.25, dtype="float64")]
    )
    it = iter(loader)

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        started = time.monotonic()
        signal.setitimer(signal.ITIMER_REAL, 0.01)
        with pytest.raises(KeyboardInterrupt):
            next(it)
        waited = time.monotonic() - started
        produced = loader.stats["batches"]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert waited < 0.5
    assert produced == 0, "the interrupt arrived only after the batch was done"
    batch = next(it)  # the same pass goes on after the interrupt
    assert batch.shape == (16, 1024, 1024, 3) and batch.dtype == np.float64
    loader.close()
