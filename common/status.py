"""Kind-style status lines: one per step, with its duration, on stderr.

The one printer of step lines for the lab (`python -m stacks.local`) and for bench's
preparation steps. On a terminal: "• Starting engines ..." is rewritten in place as
"✓ Starting engines  3.1 s". Elsewhere (CI logs, pulumi-command output): plain
"Starting engines ... done 3.1 s" lines (a failed step ends in "FAILED 3.1 s").
"""
from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import TextIO


class Status:
    def __init__(self, stream: TextIO | None = None, quiet: bool = False):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = self.stream.isatty()

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[None]:
        start = time.monotonic()
        if not self.quiet:
            self._write(f"• {title} ..." if self.tty else f"{title} ...", end="")
        try:
            yield
        except BaseException:
            self._finish(title, start, ok=False)
            raise
        self._finish(title, start, ok=True)

    def _finish(self, title: str, start: float, ok: bool) -> None:
        if self.quiet:
            return
        took_s = time.monotonic() - start
        if self.tty:
            mark = "\033[32m✓\033[0m" if ok else "\033[31m✗\033[0m"
            self._write(f"\r{mark} {title}  {took_s:.1f} s")
        else:
            self._write(f" {'done' if ok else 'FAILED'} {took_s:.1f} s")

    def _write(self, text: str, end: str = "\n") -> None:
        self.stream.write(text + end)
        self.stream.flush()
