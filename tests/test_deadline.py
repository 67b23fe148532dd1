"""The run deadline's watchdog: it interrupts the main thread only when the block overruns,
even inside a blocking call."""

from __future__ import annotations

import threading
import time

import pytest

from gsm3_ops.ops.deadline import DeadlineExceeded, deadline


def test_an_overrunning_block_is_interrupted_even_while_blocked() -> None:
    t0 = time.monotonic()
    with pytest.raises(DeadlineExceeded), deadline(0.3):
        time.sleep(5)
    assert time.monotonic() - t0 < 2


def test_a_block_within_its_deadline_runs_undisturbed() -> None:
    with deadline(5):
        time.sleep(0.05)
    time.sleep(0.1)  # nothing fires afterwards
    with deadline(None):
        pass


def test_off_the_main_thread_nothing_is_interrupted() -> None:
    done = []

    def job() -> None:
        with deadline(0.05):
            time.sleep(0.2)
        done.append(True)

    worker = threading.Thread(target=job)
    worker.start()
    worker.join()
    assert done == [True]


def test_nested_deadlines_each_raise_their_own() -> None:
    with pytest.raises(DeadlineExceeded) as info, deadline(0.3) as outer, deadline(30) as inner:
        time.sleep(5)
    assert info.value.owner is outer and info.value.owner is not inner
    with pytest.raises(DeadlineExceeded) as info, deadline(30) as outer, deadline(0.3) as inner:
        time.sleep(5)
    assert info.value.owner is inner
