"""Two helper processes for the heavy parts of an analysis (the machines have 2 cores).

Both are forked at the start, while this process is still small (nothing to copy on write):
- the parser decodes the second half of a large runs.jsonl while this process decodes the
  first;
- the plotter imports matplotlib meanwhile (half a second), waits for the table, then draws
  every plot while this process writes the CSV files.
Where fork is not available, everything runs here, in order.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import traceback
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor


class Serial:
    """The helpers' interface, doing each task here and at once."""

    def submit(self, fn, *args) -> Future:
        future: Future = Future()
        future.set_result(fn(*args))
        return future

    def draw(self, names, summary, runs) -> Future:
        return self.submit(_draw, names, summary, runs)


def _draw(names, summary, runs) -> list[bytes | None]:
    from analysis import plots
    return [plots.draw(name, summary, runs) for name in names]


def _plotter(conn) -> None:
    import analysis.plots  # noqa: F401  (while the main process parses)
    job = conn.recv()
    if job is None:
        return
    try:
        conn.send(("ok", _draw(*job)))
    except Exception:  # a bug: hand the traceback to the main process
        conn.send(("error", traceback.format_exc()))


class _Drawing:
    def __init__(self, helpers: Helpers):
        self._helpers = helpers

    def result(self) -> list[bytes | None]:
        status, value = self._helpers._conn.recv()
        self._helpers._received = True
        if status != "ok":
            raise RuntimeError(f"the plotting process failed:\n{value}")
        return value


class Helpers:
    def __init__(self) -> None:
        ctx = multiprocessing.get_context("fork")
        self._parser = ProcessPoolExecutor(max_workers=1, mp_context=ctx)
        self._conn, child = ctx.Pipe()
        self._plotter = ctx.Process(target=_plotter, args=(child,), daemon=True)
        self._plotter.start()
        self._sent = self._received = False

    def submit(self, fn, *args) -> Future:
        return self._parser.submit(fn, *args)

    def draw(self, names, summary, runs) -> _Drawing:
        self._conn.send((names, summary, runs))
        self._sent = True
        return _Drawing(self)

    def close(self) -> None:
        if not self._sent:
            self._conn.send(None)
        elif not self._received:
            # We stopped before collecting the plots (an error): the plotter would block
            # forever sending them. It is our own child; end it.
            self._plotter.terminate()
        self._plotter.join()
        self._parser.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def workers() -> Iterator[Helpers | Serial]:
    if "fork" not in multiprocessing.get_all_start_methods():
        yield Serial()
        return
    helpers = Helpers()
    try:
        yield helpers
    finally:
        helpers.close()
