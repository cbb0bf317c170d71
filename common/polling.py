"""Waiting for a condition and trying again: the two loops every part of the project needs.

`poll` waits without fixed sleeps: it checks, then sleeps a little longer each time, and
gives up at a deadline. `retry` tries an action a few times while its failure is one known
to pass (an engine's key-value store hiccup, a set-up step that was too early).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll(check: Callable[[], T], timeout_s: float, *, delay_s: float = 0.05,
         max_delay_s: float = 0.5, backoff: float = 1.5) -> T:
    """Call `check` until it returns something true, or `timeout_s` has passed.

    Returns that value, or the last (false) one at the deadline: the caller says what did
    not happen. `check` may raise to stop at once (a process that died, say). The first
    check is immediate; sleeps grow from `delay_s` by `backoff` up to `max_delay_s`.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(delay_s)
        delay_s = min(delay_s * backoff, max_delay_s)


def retry(attempt: Callable[[], T], *, tries: int, delay_s: float = 0.0,
          again_on: Callable[[BaseException], bool] = lambda exc: False,
          again_if: Callable[[T], bool] = lambda result: False,
          before_again: Callable[[T | BaseException], None] = lambda outcome: None) -> T:
    """Call `attempt` up to `tries` times in all; the last outcome is the caller's.

    It is tried again when it raised an exception for which `again_on` is true, or returned
    a result for which `again_if` is true; `before_again` sees that outcome first (to say
    so, or to clean up). Any other exception goes up at once.
    """
    for n in range(1, tries + 1):
        try:
            result = attempt()
        except Exception as exc:
            if n == tries or not again_on(exc):
                raise
            before_again(exc)
        else:
            if n == tries or not again_if(result):
                return result
            before_again(result)
        time.sleep(delay_s)
    raise ValueError(f"tries must be at least 1, not {tries}")
