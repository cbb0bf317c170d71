"""Shared fixtures: labs on the real machine, and the root requirement that fails loudly."""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests import names
from tests import residue as residue_mod


def require_root() -> None:
    """Tests of the lab need root; in CI they must fail, never skip silently."""
    if os.geteuid() != 0:
        pytest.fail("this test needs root (network namespaces, dockerd): run `make test` as root")


@pytest.fixture
def root():
    require_root()


@pytest.fixture
def lab_factory():
    """Bring labs up; each is torn down after the test and checked to leave nothing behind."""
    require_root()
    from common.status import Status
    from stacks.local import lab

    with contextlib.ExitStack() as labs:
        def make(name: str, **kwargs):
            return labs.enter_context(lab.running(name, status=Status(quiet=True), **kwargs))

        yield make


def _module_lab(prefix: str, mode: str):
    require_root()
    from common.status import Status
    from stacks.local import lab

    with lab.running(names.lab_name(prefix), mode=mode, subnet=names.subnet(), status=Status(quiet=True)) as doc:
        yield doc


@pytest.fixture(scope="module")
def swarm_lab():
    """A 2-node swarm-mode lab shared by a test module."""
    yield from _module_lab("sw", "swarm")


@pytest.fixture(scope="module")
def classic_lab():
    """A 2-node classic-mode (etcd + --cluster-store) lab shared by a test module."""
    yield from _module_lab("cl", "classic")


@pytest.fixture
def snapshot():
    return residue_mod.snapshot
