"""Shared fixtures: labs on the real machine, and the root requirement that fails loudly."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests import names, residue as residue_mod  # noqa: E402


def require_root() -> None:
    """Tests of the lab need root; in CI they must fail, never skip silently."""
    if os.geteuid() != 0:
        pytest.fail("this test needs root (network namespaces, dockerd): run `make test` as root")


@pytest.fixture
def root():
    require_root()


@pytest.fixture
def lab_factory():
    """Bring labs up; tear each down after the test and check it left nothing behind."""
    require_root()
    from stacks.local import lab
    from common.status import Status

    made: list[str] = []

    def make(name: str, **kwargs):
        made.append(name)
        return lab.up(name, status=Status(quiet=True), **kwargs)

    yield make
    failures = []
    for name in made:
        lab.down(name, status=Status(quiet=True))
        left = lab.residue(name)
        if left:
            failures.append(f"{name}: {left}")
    assert not failures, f"labs left residue: {failures}"


def _module_lab(request, name: str, mode: str):
    require_root()
    from stacks.local import lab
    from common.status import Status

    doc = lab.up(name, mode=mode, status=Status(quiet=True))

    def teardown():
        lab.down(name, status=Status(quiet=True))
        assert lab.residue(name) == {}, f"lab {name} left residue"

    request.addfinalizer(teardown)
    return doc


@pytest.fixture(scope="module")
def swarm_lab(request):
    """A 2-node swarm-mode lab shared by a test module."""
    return _module_lab(request, names.lab_name("sw"), "swarm")


@pytest.fixture(scope="module")
def classic_lab(request):
    """A 2-node classic-mode (etcd + --cluster-store) lab shared by a test module."""
    return _module_lab(request, names.lab_name("cl"), "classic")


@pytest.fixture
def snapshot():
    return residue_mod.snapshot
