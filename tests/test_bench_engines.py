"""bench.engines: the one translation of engine errors, and the one retry of a key-value store hiccup."""
from __future__ import annotations

import docker.errors
import pytest
import requests.exceptions

from bench import engines


def api_error(explanation: str) -> docker.errors.APIError:
    return docker.errors.APIError("500 Server Error", explanation=explanation)


@pytest.mark.parametrize("explanation, hiccup", [
    ("network overlay-bench not found", True),
    ("failed to get network from store during join: key not found", True),
    ("failed to update store for object type *libnetwork.endpointCnt: client: etcd cluster is "
     "unavailable or misconfigured; error #0: dial tcp 10.201.107.2:2379: connect: network is unreachable", True),
    ("driver failed programming external connectivity", False),
    ("No such image: overlay-bench/tools:1", False),
])
def test_store_hiccup(explanation, hiccup):
    assert engines.store_hiccup(api_error(explanation)) is hiccup
    assert not engines.store_hiccup(requests.exceptions.ConnectionError("network not found"))


def test_a_store_hiccup_is_tried_again_and_nothing_else(monkeypatch):
    monkeypatch.setattr(engines, "STORE_RETRY_DELAY_S", 0)
    calls = []

    def start():
        calls.append(1)
        if len(calls) < engines.STORE_TRIES:
            raise api_error("network overlay-bench not found")
        return "started"
    assert engines.with_store_retries(start) == "started" and len(calls) == engines.STORE_TRIES

    calls.clear()

    def refused():
        calls.append(1)
        raise api_error("invalid option")
    with pytest.raises(docker.errors.APIError, match="500"):
        engines.with_store_retries(refused)
    assert len(calls) == 1


def test_answering_names_the_node_and_says_refused_or_down():
    with pytest.raises(engines.EngineRefused) as refused, engines.answering("lab-node1"):
        raise api_error("conflict: port is taken")
    assert str(refused.value) == "engine on lab-node1 refused a request: conflict: port is taken"
    assert refused.value.node_down is None and refused.value.exit_code == 1

    with pytest.raises(engines.EngineDown) as down, engines.answering("lab-node2"):
        raise requests.exceptions.ConnectionError("('Connection aborted.', FileNotFoundError(2))\nmore")
    assert str(down.value) == ("engine on lab-node2 stopped answering: "
                               "('Connection aborted.', FileNotFoundError(2))")
    assert down.value.node_down == "lab-node2" and not down.value.timed_out

    with pytest.raises(engines.EngineDown) as slow, engines.answering(doing="while preparing"):
        raise requests.exceptions.ReadTimeout("Read timed out. (read timeout=30)")
    assert str(slow.value) == "an engine stopped answering while preparing: Read timed out. (read timeout=30)"
    assert slow.value.timed_out


def test_answering_lets_other_errors_through():
    with pytest.raises(KeyError), engines.answering("lab-node1"):
        raise KeyError("a bug stays a bug")
