"""Read a stack's outputs document (stacks/outputs.py): from Pulumi or from a file."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from common.errors import UsageError
from stacks import outputs as contract

PROJECT_DIR = Path(__file__).resolve().parents[1]


class StackError(UsageError):
    """The outputs cannot be read or do not follow the contract."""


def from_file(path: str | os.PathLike) -> dict[str, Any]:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise StackError(f"cannot read --outputs {path}: {exc.strerror or exc}") from None
    try:
        return contract.loads(text, source=str(path))
    except contract.OutputsError as exc:
        raise StackError(str(exc)) from None


def from_pulumi(stack: str) -> dict[str, Any]:
    """`pulumi stack output --json` in the project directory (the CLI knows the backend)."""
    pulumi = shutil.which("pulumi")
    if pulumi is None:
        raise StackError("the pulumi CLI is not on PATH: install it (scripts/setup.sh), or pass "
                         "--outputs FILE with the output of `pulumi stack output --json`")
    env = dict(os.environ, PULUMI_SKIP_UPDATE_CHECK="true")
    try:
        proc = subprocess.run([pulumi, "stack", "output", "--json", "--stack", stack],
                              cwd=PROJECT_DIR, capture_output=True, text=True, env=env, timeout=120)
    except subprocess.TimeoutExpired:
        raise StackError(f"`pulumi stack output --stack {stack}` did not answer in 120 s") from None
    if proc.returncode != 0:
        err = proc.stderr.strip().splitlines()
        raise StackError(f"`pulumi stack output --stack {stack}` failed: {err[-1] if err else proc.returncode}")
    try:
        return contract.loads(proc.stdout, source=f"pulumi stack {stack}")
    except contract.OutputsError as exc:
        raise StackError(str(exc)) from None


def validate(doc: Any) -> dict[str, Any]:
    try:
        return contract.validate(doc)
    except contract.OutputsError as exc:
        raise StackError(str(exc)) from None


def without_secrets(doc: dict[str, Any]) -> dict[str, Any]:
    """The outputs as stored in metadata.json. The contract holds paths, never key material;
    this copy is where anything secret a future version adds would be dropped."""
    return {k: doc[k] for k in contract.KEYS}
