"""Precision reached: per case, the half-width of each network's 95 % interval against host.

`python -m bench --precision PCT` adds rounds until every such half-width is at most PCT
percentage points (or its --max-runs are done); the target is in the session's plan
(`plan.precision_points`). Here the half-width is computed from the runs themselves (Fieller's
interval of the overhead table), for every session, and compared with the target where the
setup's sessions set one (the smallest, when they differ).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd


def targets(setups) -> dict[str, float]:
    """Setup label -> the precision target of its sessions, in percentage points."""
    out = {}
    for label, members in setups.items():
        asked = [s.metadata.get("plan", {}).get("precision_points") for s in members]
        asked = [float(t) for t in asked if isinstance(t, (int, float))]
        if asked:
            out[label] = min(asked)
    return out


def add_columns(table: pd.DataFrame, networks: list[str], target_points: dict[str, float]) -> None:
    """`{net}_overhead_half_width_points` for every network compared with host; with a target,
    `precision_target_points` and `{net}_precision_met`. In place."""
    if "host" not in networks:
        return
    table["precision_target_points"] = table["setup"].map(target_points).astype(float)
    for net in networks:
        if net == "host":
            continue
        half = (table[f"{net}_overhead_ci_high_percent"] - table[f"{net}_overhead_ci_low_percent"]) / 2
        table[f"{net}_overhead_half_width_points"] = half
        target = table["precision_target_points"]
        # Unbounded (NaN) has not met it; never measured (no runs) is not judged.
        met = (half <= target).where(target.notna() & (table[f"{net}_n"] > 0))
        table[f"{net}_precision_met"] = met


def display(summary: pd.DataFrame, networks: list[str]) -> pd.DataFrame | None:
    """The precision table of the report, for the setups with a target; None when none has."""
    from analysis.table import case_label, fmt

    if "precision_target_points" not in summary or summary["precision_target_points"].isna().all():
        return None
    shown = summary[summary["precision_target_points"].notna()]
    compared = [n for n in networks if f"{n}_precision_met" in shown and shown[f"{n}_precision_met"].notna().any()]
    rows = []
    for _, row in shown.iterrows():
        out = {"stack": row["setup"], "case": case_label(row),
               "target": f"+-{row['precision_target_points']:g} points", "host n": str(row["host_n"])}
        for net in compared:
            met = row[f"{net}_precision_met"]
            if met is None or (isinstance(met, float) and math.isnan(met)):
                out[f"{net} +- points"] = out[f"{net} n"] = out[f"{net} met"] = ""
                continue
            half = row[f"{net}_overhead_half_width_points"]
            out[f"{net} +- points"] = "unbounded" if np.isnan(half) else fmt(half, 2)
            out[f"{net} n"] = str(row[f"{net}_n"])
            out[f"{net} met"] = "yes" if met else "no"
        rows.append(out)
    return pd.DataFrame(rows)


NOTES = """\
Precision: the half-width of each network's 95 % interval against host (Fieller's, as in the
comparison table), in percentage points, against the target the session was run with
(`python -m bench --precision PCT`): bench added rounds until every case met it, or until
--max-runs. "unbounded" never meets a target. The stopping rule's decisions are in each
session's precision.jsonl.
"""
