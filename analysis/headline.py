"""The answer at a glance, at the top of the report: one line per case and network compared
with host, "overlay costs 3.4% [3.3, 3.5] against host (VXLAN bound 3.45%)".

The cost is what a network loses against host in the user's sense: the throughput it loses
(iperf2, iperf3) or the latency it adds (sockperf), in percent of host's figure, so a positive
cost is worse and a negative one better. The interval is the comparison table's (Fieller's 95 %
interval of "vs host %"), turned the same way. Any network compared with host gets its line
(bridge, or a network added later), the VXLAN bound only the overlays, which carry VXLAN.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from analysis import stats
from analysis.table import Footnotes, case_label, compared_networks, fmt_p, network_status, records, uses_vxlan

# Enough to answer at a glance; the comparison table below holds every case.
MAX_LINES = 24

INTRO = ("Cost: the throughput a network loses against host (iperf2, iperf3) or the latency it adds "
         "(sockperf), in percent, with its 95% interval. VXLAN bound: the cost of VXLAN's 50 header "
         "bytes per packet alone, the least an overlay can cost on a link-bound path.")


@dataclass(frozen=True)
class Line:
    case: str    # "lab · iperf3 tcp P10 forward lab-node2->lab-node1 10s · throughput"
    claim: str   # "overlay costs 3.4% [3.3, 3.5] against host"
    remark: str  # "VXLAN bound 3.45%", or "" (what the claim is to be read beside)

    def __str__(self) -> str:
        return f"{self.case}: {self.claim}" + (f" ({self.remark})" if self.remark else "")


def _pct(value: float) -> str:
    return f"{round(float(value), 1) + 0.0:.1f}"  # + 0.0: no "-0.0"


def lines(summary: pd.DataFrame, notes: Footnotes) -> tuple[list[Line], list[str]]:
    """The headline lines, and the sentences that follow them (what was not compared, and why)."""
    compared = compared_networks(summary)
    if "host_n" not in summary or not compared or not (summary["host_n"] > 0).any():
        return [], ["No network was compared with host in these results (host or the other networks "
                    "were not measured): the comparison table gives each network's own figures."]
    out: list[Line] = []
    missing: dict[str, dict[str, None]] = {}  # what was not compared -> its cases, in order
    for row in records(summary):
        throughput = row["metric"] == "throughput_mbps"
        case = f"{row['setup']} · {case_label(row)} · " + ("throughput" if throughput else "p50 latency")
        for net in compared:
            over = row[f"{net}_overhead_percent"]
            if pd.isna(over):
                status = network_status(row, net, notes)
                if status and status != "-":
                    missing.setdefault(f"{net} {status}", {})[case] = None
                elif row["host_n"] == 0 and row[f"{net}_n"] > 0:
                    host = network_status(row, "host", notes)
                    missing.setdefault("host " + (host if host != "-" else "not measured"), {})[case] = None
                continue
            sign = -1 if throughput else 1
            low, high = row[f"{net}_overhead_ci_low_percent"], row[f"{net}_overhead_ci_high_percent"]
            claim = f"{net} costs {_pct(sign * over)}%"
            remarks = []
            if min(row["host_n"], row[f"{net}_n"]) < 2:
                remarks.append("fewer than 2 runs on a side: no interval")
            elif pd.isna(low) or pd.isna(high):
                claim += " [unbounded]"
            else:
                low, high = sorted((sign * low, sign * high))
                claim += f" [{_pct(low)}, {_pct(high)}]"
            claim += " against host"
            if throughput and uses_vxlan(net) and not pd.isna(row["vxlan_bound_percent"]):
                remarks.append(f"VXLAN bound {-row['vxlan_bound_percent'] + 0.0:.2f}%")
            p = row[f"{net}_welch_p"]
            if not pd.isna(p) and p >= stats.ALPHA:
                remarks.append(f"not significant, p={fmt_p(p)}")
            loss, host_loss = row.get(f"{net}_udp_loss_percent_mean"), row.get("host_udp_loss_percent_mean")
            if row["protocol"] == "udp" and not (pd.isna(loss) or pd.isna(host_loss)):
                remarks.append(f"UDP loss {loss:.3f}%, host {host_loss:.3f}%")
            out.append(Line(case, claim, "; ".join(remarks)))
    after = []
    if len(out) > MAX_LINES:
        after.append(f"{len(out) - MAX_LINES} more in the comparison table below.")
        out = out[:MAX_LINES]
    for what, cases in missing.items():
        after.append(f"Not compared: {what}, in {len(cases)} case" + ("" if len(cases) == 1 else "s") + ".")
    return out, after
