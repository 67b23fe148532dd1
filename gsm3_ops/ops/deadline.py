"""A deadline for a block of the main thread: a watchdog interrupts it when it runs too long.

Used around a day's run under the run lock (``schedule.run_deadline_s``), so a hung input or
store never holds the lock, and every later run, for good. A watchdog thread sends SIGUSR1
to the main thread (``signal.pthread_kill``: a blocking call there returns at once), whose
handler raises :class:`DeadlineExceeded`, a ``BaseException`` so that no ``except
Exception`` on the way swallows it. Alarms (SIGALRM) and Ctrl-C are left alone. Outside the
main thread (the scheduler's job threads) there is nothing to interrupt, and the block runs
unbounded.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class DeadlineExceeded(BaseException):
    """The block ran past its deadline."""


@contextlib.contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    """Raise :class:`DeadlineExceeded` in the block if it runs longer than ``seconds``
    (None: never)."""
    if seconds is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    done, lock = threading.Event(), threading.Lock()

    def expire(signum: int, frame: object) -> None:
        raise DeadlineExceeded(f"past the deadline of {seconds} s")

    def watch() -> None:
        if done.wait(seconds):
            return
        with lock:
            if not done.is_set():
                signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)

    before = signal.signal(signal.SIGUSR1, expire)
    watcher = threading.Thread(target=watch, name="gsm3-deadline", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        with lock:
            done.set()
        watcher.join()
        signal.signal(signal.SIGUSR1, before)
