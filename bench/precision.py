"""Precision on demand: the rule that says whether a session needs another round.

`python -m bench --precision PCT [--max-runs N]` runs `--runs` rounds, then after each round
asks `decide()`: every case measured on host and on another network has that network's
change against host ("overlay vs host %") with a 95 % interval, Fieller's interval of the
ratio of the two means, exactly as `python -m analysis` computes it (analysis/stats.py, imported
here: it needs numpy and scipy only, and analysis imports nothing of bench but the results
format). The session stops when every such interval has a half-width of at most PCT
percentage points, or when N rounds are done. A comparison whose interval is unbounded, or
whose runs all failed, has not met the target. Networks whose runs are all skipped
(unsupported on these hosts) are not compared.

Every decision is appended to the session's `precision.jsonl` (one line per round checked),
so the rule, the rounds it ran and the precision it reached stay on record, and `--resume`
continues the rule from the runs already stored.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from analysis import stats
from bench import results_format as fmt
from bench.store import StoreError

FILE = "precision.jsonl"

# A comparison: (case without its network, the network compared with host).
Comparison = tuple[str, str]


def half_width_points(host: Sequence[float], other: Sequence[float]) -> float:
    """Half the width of Fieller's 95 % interval of mean(other) / mean(host), in percentage
    points; NaN when it is unbounded or a side has fewer than 2 values."""
    a, b = np.asarray(other, dtype=float), np.asarray(host, dtype=float)
    if len(a) < 2 or len(b) < 2:
        return math.nan
    low, high = stats.fieller_ratio_ci(a.mean(), a.std(ddof=1), len(a), b.mean(), b.std(ddof=1), len(b))
    return float((high - low) / 2 * 100)


@dataclasses.dataclass(frozen=True)
class Decision:
    """The rule's answer after a round."""
    round: int
    stop: bool
    reason: str  # "target met", "max runs reached" or "" (go on)
    half_widths: dict[Comparison, float]  # percentage points, NaN when unbounded
    target_points: float

    def met(self, half_width: float) -> bool:
        return not math.isnan(half_width) and half_width <= self.target_points

    @property
    def widest(self) -> tuple[Comparison, float] | None:
        """The comparison furthest from the target (an unbounded one first)."""
        if not self.half_widths:
            return None
        return max(self.half_widths.items(), key=lambda kv: math.inf if math.isnan(kv[1]) else kv[1])

    def to_json(self) -> dict[str, Any]:
        return {"round": self.round, "stop": self.stop, "reason": self.reason or None,
                "target_points": self.target_points,
                "comparisons": [{"case": case, "network": net,
                                 "half_width_points": None if math.isnan(w) else round(w, 4),
                                 "met": self.met(w)}
                                for (case, net), w in sorted(self.half_widths.items())]}

    def summary(self) -> str:
        met = sum(self.met(w) for w in self.half_widths.values())
        text = (f"precision: target +-{self.target_points:g} points, round {self.round}: "
                f"{met} of {len(self.half_widths)} comparisons within it")
        widest = self.widest
        if widest and not self.met(widest[1]):
            (case, net), width = widest
            shown = "unbounded" if math.isnan(width) else f"+-{width:.2f}"
            text += f"; widest {case}, {net} vs host: {shown}"
        return text + (f"; stopped: {self.reason}" if self.stop else "")


def decide(values: Mapping[Comparison, tuple[Sequence[float], Sequence[float]]], *, target_points: float,
           rounds_done: int, min_rounds: int, max_rounds: int) -> Decision:
    """Whether to stop after `rounds_done` rounds, from each comparison's (host, other) values.

    A pure function of the values: the same runs give the same answer, so a resumed session
    continues the rule where it was.
    """
    widths = {key: half_width_points(host, other) for key, (host, other) in values.items()}
    decision = Decision(rounds_done, False, "", widths, target_points)
    if rounds_done < min_rounds:
        return decision
    if all(decision.met(w) for w in widths.values()):
        return dataclasses.replace(decision, stop=True, reason="target met")
    if rounds_done >= max_rounds:
        return dataclasses.replace(decision, stop=True, reason="max runs reached")
    return decision


def comparisons(records: Iterable[dict[str, Any]]) -> dict[Comparison, tuple[list[float], list[float]]]:
    """Each case's host values and each other network's, from run records (the last line of
    each run_id counts); networks with no ok run and some skipped ones are left out."""
    last: dict[str, dict[str, Any]] = {}
    for rec in records:
        last[rec["run_id"]] = rec
    by_case: dict[str, dict[str, list[float]]] = {}
    skipped: dict[str, set[str]] = {}
    for rec in last.values():
        case = (f"{rec['tool']}-{rec['protocol']}-P{rec['streams']}-{rec['direction']}-"
                f"{rec['server_node']}-{rec['client_node']}")
        nets = by_case.setdefault(case, {})
        values = nets.setdefault(rec["network"], [])
        metric = fmt.TOOL_METRICS[rec["tool"]][0]
        if rec["status"] == "ok" and rec.get(metric) is not None:
            values.append(float(rec[metric]))
        elif rec["status"] == "skipped":
            skipped.setdefault(case, set()).add(rec["network"])
    out = {}
    for case, nets in by_case.items():
        host = nets.get("host", [])
        for net, values in nets.items():
            if net == "host" or (not values and net in skipped.get(case, set())):
                continue
            out[(case, net)] = (host, values)
    return out


def record(session: Path, decision: Decision) -> None:
    """Append the decision to the session's precision.jsonl, on disk before the next round."""
    path = session / FILE
    try:
        with open(path, "a") as f:
            f.write(json.dumps(decision.to_json()) + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc.strerror or exc}; continue with --resume {session}") from None
