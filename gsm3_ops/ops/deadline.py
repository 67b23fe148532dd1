"""A deadline for a block of the main thread: a watchdog interrupts it when it runs too long.

Used around a day's run under the run lock (``schedule.run_deadline_s``), so a hung input or
store never holds the lock, and every later run, for good; and around each fetch
(``sources.fetch_deadline_s``), which bounds a provider's queue. A watchdog thread sends
SIGUSR1 to the main thread (``signal.pthread_kill``: a blocking call there returns at once),
whose handler raises :class:`DeadlineExceeded`, a ``BaseException`` so that no ``except
Exception`` on the way swallows it. Deadlines nest (a fetch's inside a run's): each handler
raises only for its own. Alarms (SIGALRM) and Ctrl-C are left alone. Outside the main thread
there is nothing to interrupt, and the block runs unbounded: the scheduler therefore runs
each fire in a child process's main thread (``ops/fire.py``).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class DeadlineExceeded(BaseException):
    """A block ran past its deadline; ``owner`` is what :func:`deadline` yielded for it."""

    def __init__(self, message: str, owner: object = None) -> None:
        super().__init__(message)
        self.owner = owner


@contextlib.contextmanager
def deadline(seconds: float | None) -> Iterator[object]:
    """Raise :class:`DeadlineExceeded` in the block if it runs longer than ``seconds``
    (None: never). Yields a token; the exception's ``owner`` is it, so a caller catching
    its own deadline lets an enclosing one's pass."""
    owner = object()
    if seconds is None or threading.current_thread() is not threading.main_thread():
        yield owner
        return
    done, fired, lock = threading.Event(), threading.Event(), threading.Lock()

    def expire(signum: int, frame: object) -> None:
        if fired.is_set():
            raise DeadlineExceeded(f"past the deadline of {seconds} s", owner)
        if callable(before):  # an enclosing deadline's signal: its handler decides
            before(signum, frame)

    def watch() -> None:
        if done.wait(seconds):
            return
        with lock:
            if not done.is_set():
                fired.set()
                signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)

    before = signal.signal(signal.SIGUSR1, expire)
    watcher = threading.Thread(target=watch, name="gsm3-deadline", daemon=True)
    watcher.start()
    try:
        yield owner
    finally:
        with lock:
            done.set()
        watcher.join()
        signal.signal(signal.SIGUSR1, before)
