"""The demo's display of slow waits and its time limit: every wait is
bounded by its own timeout and by what is left of the whole run."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO, TypeVar

T = TypeVar("T")
SPINNER = "|/-\\"


class DemoError(Exception):
    """A step did not do what it should; the message says what and where."""


class DemoTimeout(DemoError):
    """The whole run, or one wait, took longer than its limit."""


class Deadline:
    def __init__(self, limit: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.clock = limit, clock
        self.started = clock()

    def elapsed(self) -> float:
        return self.clock() - self.started

    def left(self) -> float:
        return self.limit - self.elapsed()

    def check(self, doing: str) -> None:
        if self.left() <= 0:
            raise DemoTimeout(f"gave up: the demo's time limit ({self.limit:.0f} s) passed while {doing}")


class Progress:
    """On a terminal a spinner on the current line; otherwise one plain line
    when a slow wait begins, so a log stays readable."""

    def __init__(self, out: TextIO, deadline: Deadline) -> None:
        self.out, self.deadline = out, deadline
        self.tty = out.isatty()
        self._spin = 0
        self._shown = False

    def say(self, text: str) -> None:
        self._clear()
        print(text, file=self.out, flush=True)

    def wait_for(self, predicate: Callable[[], T], what: str, timeout: float = 60.0, slow: bool = False,
                 interval: float = 0.25) -> T:
        """Poll ``predicate`` until it returns something true; return that."""
        end = time.monotonic() + timeout
        announced = False
        try:
            while True:
                value = predicate()
                if value:
                    return value
                self.deadline.check(f"waiting for {what}")
                if time.monotonic() > end:
                    raise DemoTimeout(f"timed out after {timeout:.0f} s waiting for {what}")
                if slow and self.tty:
                    self._tick(what)
                elif slow and not announced:  # one plain line, only for a wait that is not over at once
                    self.say(f"        ... waiting for {what}")
                    announced = True
                time.sleep(interval)
        finally:
            self._clear()

    def _tick(self, what: str) -> None:
        self._spin = (self._spin + 1) % len(SPINNER)
        self.out.write(f"\r        {SPINNER[self._spin]} {what} ({self.deadline.elapsed():.0f} s)\x1b[K")
        self.out.flush()
        self._shown = True

    def _clear(self) -> None:
        if self._shown:
            self.out.write("\r\x1b[K")
            self.out.flush()
            self._shown = False
