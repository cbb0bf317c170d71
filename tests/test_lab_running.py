"""lab.running: the lab lives for a `with` block, and is gone after it even when the block fails."""
from __future__ import annotations

import pytest

from common.status import Status
from stacks.local import lab
from tests import names
from tests.conftest import require_root


class Boom(Exception):
    pass


def test_a_failing_block_still_takes_the_lab_down():
    require_root()
    name = names.lab_name("run")
    with pytest.raises(Boom), lab.running(name, mode="swarm", subnet=names.subnet(),
                                          status=Status(quiet=True)) as doc:
        assert doc["stack"] == name and lab.status_of(name) == doc
        raise Boom
    assert lab.residue(name) == {}
    with pytest.raises(lab.LabError, match="no lab named"):
        lab.status_of(name)
