"""What tests of concurrent code share: a clock the test moves, and a wait for a state other
threads reach (a generous timeout, never a fixed sleep)."""

from __future__ import annotations

import time
from typing import Callable


class Clock:
    """An injectable clock (``Admission``, the batching ``Policy``): it reads what the test
    set; waits still time out in real time, then look at this clock, so a waiter sees its
    timeout or deadline pass only when the test says."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def until(cond: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Wait until ``cond()`` holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"never {what}"
        time.sleep(0.001)
