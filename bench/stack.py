"""Read a stack's outputs document (stacks/outputs.py): from Pulumi or from a file."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from common.errors import UsageError
from stacks import outputs as contract

PROJECT_DIR = Path(__file__).resolve().parents[1]


class StackError(UsageError):
    """The outputs cannot be read or do not follow the contract."""


# A results session's directory is named YYYYmmdd-HHMMSS-STACK, and the stack name goes into
# engine labels and network names too: the names Pulumi allows for a stack (letters, digits,
# '-', '_', '.'), which every provider's stack name and every lab name is.
STACK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def _parse(data: bytes, source: str) -> dict[str, Any]:
    """The outputs document in `data`, checked: UTF-8, JSON, the contract, a usable stack name."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StackError(f"{source} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}): "
                         "pass the output of `pulumi stack output --json`") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StackError(f"{source} is not JSON ({exc}): pass the output of "
                         "`pulumi stack output --json`") from None
    return validate(doc, source)


def from_file(path: str | os.PathLike) -> dict[str, Any]:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise StackError(f"cannot read --outputs {path}: {exc.strerror or exc}") from None
    return _parse(data, str(path))


def from_pulumi(stack: str) -> dict[str, Any]:
    """`pulumi stack output --json` in the project directory (the CLI knows the backend)."""
    pulumi = shutil.which("pulumi")
    if pulumi is None:
        raise StackError("the pulumi CLI is not on PATH: install it (scripts/setup.sh), or pass "
                         "--outputs FILE with the output of `pulumi stack output --json`")
    env = dict(os.environ, PULUMI_SKIP_UPDATE_CHECK="true")
    try:
        proc = subprocess.run([pulumi, "stack", "output", "--json", "--stack", stack],
                              cwd=PROJECT_DIR, capture_output=True, env=env, timeout=120)
    except subprocess.TimeoutExpired:
        raise StackError(f"`pulumi stack output --stack {stack}` did not answer in 120 s") from None
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        raise StackError(f"`pulumi stack output --stack {stack}` failed: {err[-1] if err else proc.returncode}")
    return _parse(proc.stdout, f"`pulumi stack output --stack {stack}`")


def validate(doc: Any, source: str = "stack outputs") -> dict[str, Any]:
    """The outputs contract, and a stack name that can name a results directory."""
    if not isinstance(doc, dict):
        raise StackError(f"{source} is a JSON {_json_type(doc)}, not an object: pass the output "
                         "of `pulumi stack output --json`")
    try:
        doc = contract.validate(doc)
    except contract.OutputsError as exc:
        raise StackError(str(exc)) from None
    if not STACK_NAME.fullmatch(doc["stack"]):
        raise StackError(f"stack outputs invalid at stack: {doc['stack']!r} cannot name a results directory "
                         "(YYYYmmdd-HHMMSS-STACK): use letters, digits, '-', '_' and '.' (100 at most)")
    return doc


def _json_type(value: Any) -> str:
    return {list: "array", str: "string", bool: "boolean", int: "number", float: "number",
            type(None): "null"}.get(type(value), type(value).__name__)


def without_secrets(doc: dict[str, Any]) -> dict[str, Any]:
    """The outputs as stored in metadata.json. The contract holds paths, never key material;
    this copy is where anything secret a future version adds would be dropped."""
    return {k: doc[k] for k in contract.KEYS}
