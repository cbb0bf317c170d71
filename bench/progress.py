"""Progress on stderr: step lines while preparing, then a bar with ETA on a terminal and
plain lines otherwise (CI logs)."""
from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, TextColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress

from common.status import Status


def describe(record: dict[str, Any]) -> str:
    if record["status"] != "ok":
        return f"{record['status']}: {record['reason']}"
    parts = []
    if record["throughput_mbps"] is not None:
        parts.append(f"{record['throughput_mbps']:.1f} Mbit/s")
    if record["retransmits"] is not None:
        parts.append(f"{record['retransmits']} retransmits")
    if record["udp_loss_percent"] is not None:
        parts.append(f"loss {record['udp_loss_percent']:.3g}%")
    if record["latency_p50_us"] is not None:
        parts.append(f"p50 {record['latency_p50_us']:.1f} us, p99 {record['latency_p99_us']:.1f} us")
    if record.get("cpu_cores_per_gbps") is not None:
        parts.append(f"CPU {record['cpu_total_cores']:.2f} cores ({record['cpu_scope']}), "
                     f"{record['cpu_cores_per_gbps'] * 100:.2f} % of a core per Gbit/s")
    return ", ".join(parts)


class Progress:
    def __init__(self, enabled: bool = True, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.enabled = enabled
        self.live = enabled and self.console.is_terminal
        self._bar: RichProgress | None = None
        self._task = None
        self._n = 0
        self._total = 0
        self._status = Status(stream=self.console.file, quiet=not enabled)

    def step(self, text: str):
        """A preparation step: the status line stacks.local prints too (common/status.py)."""
        return self._status.step(text)

    def start(self, runs: int, estimate_s: float) -> None:
        self._total = runs
        if not self.enabled:
            return
        if self.live:
            self._bar = RichProgress(TextColumn("{task.description}"), BarColumn(),
                                     TextColumn("{task.fields[runs]} runs"), TextColumn("ETA"),
                                     TimeRemainingColumn(), console=self.console, transient=False)
            # Advanced by each run's estimated seconds, so the ETA weighs long and short runs.
            self._task = self._bar.add_task("runs", total=max(estimate_s, 1e-9), runs=f"0/{runs}")
            self._bar.start()
        else:
            self._plain(f"{runs} runs to do, about {estimate_s / 60:.1f} min")

    def more(self, runs: int, estimate_s: float) -> None:
        """Runs added on the way (a round the precision rule asked for)."""
        self._total += runs
        if self._bar is not None:
            total = self._bar.tasks[0].total or 0
            self._bar.update(self._task, total=total + estimate_s, runs=f"{self._n}/{self._total}")

    def begin(self, run) -> None:
        if self._bar is not None:
            self._bar.update(self._task, description=f"{run.run_id}")

    def done(self, run, record: dict[str, Any], cost_s: float) -> None:
        self._n += 1
        if not self.enabled:
            return
        line = f"[{self._n}/{self._total}] {run.run_id}: {describe(record)}"
        if record.get("wall_s") is not None and record["status"] != "skipped":
            line += f" ({record['wall_s']:.1f} s)"
        if self._bar is not None:
            self._bar.console.print(line, highlight=False, markup=False, soft_wrap=True)
            self._bar.update(self._task, advance=cost_s, runs=f"{self._n}/{self._total}")
        else:
            self._plain(line)

    def note(self, line: str) -> None:
        """A line between runs (a retry, say), above the bar on a terminal."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.console.print(line, highlight=False, markup=False, soft_wrap=True)
        else:
            self._plain(line)

    def _plain(self, line: str) -> None:
        # Not a terminal (CI, a pipe): whole lines, never wrapped or coloured.
        print(line, file=self.console.file, flush=True)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
