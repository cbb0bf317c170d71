"""The README as a new user reads it: its step-by-step block runs verbatim, its links resolve.

The block runs in a fresh copy of the project (the files git knows, as a clone would have
them), with a shell environment as bare as a new login's, so that nothing from this test
run (PATH, PULUMI_*, the state directory) helps it along. Only the copy's Pulumi.local.yaml
gets a lab name and subnet of its own, so that the lab cannot collide with another on the
machine; the commands themselves are the README's, character for character.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests import names
from tests.conftest import REPO, require_root

README = REPO / "README.md"
STEP_MARKER = "<!-- step by step: tests/test_readme.py runs this block verbatim -->"
# A new root login's PATH (Debian's), plus Go where its installer puts it.
LOGIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/local/go/bin"


def step_by_step_block(text: str) -> str:
    """The fenced sh block right after the marker."""
    after = text.split(STEP_MARKER, 1)
    assert len(after) == 2, f"README.md lost its marker {STEP_MARKER!r}"
    match = re.match(r"\s*```sh\n(.*?)\n```", after[1], re.S)
    assert match, "the marker must be followed by a ```sh block"
    return match.group(1)


def fresh_copy(dest: Path) -> Path:
    """The project's files as a clone has them (tracked and new, not ignored), and the .venv."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = REPO / name
        if src.is_file() and not src.is_symlink():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    # `make setup` would build a new virtualenv from PyPI; the one here has the same pins.
    (dest / ".venv").symlink_to((REPO / ".venv").resolve())
    return dest


@pytest.mark.root
@pytest.mark.slow
def test_step_by_step_runs_verbatim_in_a_fresh_copy(tmp_path):
    require_root()
    from stacks.local import lab

    block = step_by_step_block(README.read_text())
    assert "pulumi up" in block and "python -m bench" in block and "python -m analysis" in block
    project = fresh_copy(tmp_path / "overlay-bench")
    lab_name, subnet = names.lab_name("rd"), names.subnet()
    stack_file = project / "Pulumi.local.yaml"
    doc = yaml.safe_load(stack_file.read_text())
    doc["config"].update({"overlay-bench:labName": lab_name, "overlay-bench:subnet": subnet})
    stack_file.write_text(yaml.safe_dump(doc, sort_keys=False))

    env = {"PATH": LOGIN_PATH, "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8"}
    if os.environ.get("OVERLAY_BENCH_OFFLINE"):
        env["OVERLAY_BENCH_OFFLINE"] = os.environ["OVERLAY_BENCH_OFFLINE"]
    try:
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=project, env=env,
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"README step by step failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        sessions = sorted((project / "results").glob("*/metadata.json"))
        assert len(sessions) == 1, sessions
        runs = [json.loads(line) for line in (sessions[0].parent / "runs.jsonl").read_text().splitlines()]
        assert [r["status"] for r in runs] == ["ok"] * 10, [(r["run_id"], r["reason"]) for r in runs]
        assert {r["network"] for r in runs} == {"host", "overlay"}
        report = sessions[0].parent / "analysis" / "report.md"
        assert report.is_file() and "overlay" in report.read_text()
        assert lab.residue(lab_name) == {}, f"pulumi destroy left: {lab.residue(lab_name)}"
    finally:
        subprocess.run(["bash", "-c", ". scripts/pulumi-env.sh && pulumi destroy --yes --stack local"],
                       cwd=project, env=env, capture_output=True, timeout=300)
        lab.down(lab_name)


LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("page", [README, *sorted((REPO / "docs").glob("*.md")), REPO / "toolchain/README.md"],
                         ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page):
    broken = [target for target in LINK.findall(page.read_text())
              if "://" not in target and not (page.parent / target).exists()]
    assert not broken, f"{page.relative_to(REPO)} links to missing files: {broken}"


def test_readme_stays_short():
    lines = README.read_text().count("\n")
    assert lines <= 250, f"README.md has {lines} lines: move detail into docs/ (it links them)"
