"""What the per-tool tests share: the captured outputs (tests/fixtures/tool-output/, whose
README says how each was made) and a case of the matrix to build command lines for."""
from __future__ import annotations

from pathlib import Path

from bench.plan import Case

FIXTURES = Path(__file__).parent / "fixtures" / "tool-output"


def read(name: str) -> str:
    return (FIXTURES / name).read_text()


def case_of(tool: str, protocol: str = "tcp", streams: int = 10, direction: str = "forward",
            network: str = "overlay") -> Case:
    return Case(tool, protocol, streams, direction, network, "lab-node1", "lab-node2")
