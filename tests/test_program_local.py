"""The local stack: its lab command under Pulumi mocks, then the same commands run for real.

The mocked part checks the command line, the replace policy and that the exports are the
lab's document unchanged. The `root` part runs the exact create and delete strings the
program declares, as pulumi-command would (`/bin/sh -c` in the project directory), against
the real lab, including a replace in the order Pulumi performs it.
"""
from __future__ import annotations

import json
import shlex
import subprocess
import sys

import pytest

from stacks import outputs
from stacks.local import __main__ as lab_cli
from stacks.local.stack import PROJECT_DIR
from tests import names
from tests.test_program_support import built_documents, run_program

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning:pulumi_digitalocean.*"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning:pulumi_command.*")]


def lab_document(name: str = "local", nodes: int = 2, mode: str = "classic",
                 link_rate: str | None = None, mtu_bytes: int = 1500) -> dict:
    """What `python -m stacks.local up` prints (shape of stacks/local/lab.py outputs())."""
    return outputs.validate({
        "schema_version": outputs.SCHEMA_VERSION, "stack": name, "provider": "local", "mode": mode,
        "nodes": [{"name": f"{name}-node{i}", "role": "manager" if i == 1 else "worker",
                   "address": f"10.213.0.{10 + i}",
                   "docker_host": f"unix:///run/overlay-bench/{name}/node{i}.sock",
                   "tls_cert_path": None, "ssh_key_path": None} for i in range(1, nodes + 1)],
        "keystore": ({"name": f"{name}-keystore", "address": "10.213.0.2",
                      "url": "etcd://10.213.0.2:2379"} if mode == "classic" else None),
        "overlay_network": "overlay-bench", "link_rate": link_rate, "mtu_bytes": mtu_bytes,
        "underlay_network": outputs.underlay("eth0", "10.213.0.0/24", "10.213.0.128/25"),
    })


def run_local(cfg: dict, stack: str = "local", printed: str | None = None, doc: dict | None = None):
    text = printed if printed is not None else outputs.dumps(doc or lab_document())
    return run_program({"provider": "local", **cfg}, stack, command_stdout=lambda name, inputs: text)


def test_create_and_delete_are_the_lab_cli():
    r = run_local({"nodes": "3", "mode": "swarm", "linkRate": "1gbit", "mtu": "9000",
                   "labName": "lab7"}, doc=lab_document("lab7", 3, "swarm", "1gbit", 9000))
    lab = r.mocks.named("lab")
    up = shlex.split(lab.inputs["create"])
    assert up == [sys.executable, "-m", "stacks.local", "up", "--name", "lab7", "--nodes", "3",
                  "--mode", "swarm", "--mtu", "9000", "--link-rate", "1gbit"], lab.urn
    assert shlex.split(lab.inputs["delete"]) == [sys.executable, "-m", "stacks.local", "down",
                                                 "--name", "lab7"], lab.urn
    assert lab.inputs["dir"] == str(PROJECT_DIR), lab.urn
    # The lab's own parser takes these arguments as meant.
    args = lab_cli.parse_args(up[3:])
    assert (args.command, args.name, args.nodes, args.mode, args.link_rate, args.mtu) == \
        ("up", "lab7", 3, "swarm", "1gbit", 9000)
    down = lab_cli.parse_args(shlex.split(lab.inputs["delete"])[3:])
    assert (down.command, down.name) == ("down", "lab7")


def test_unshaped_default_has_no_link_rate_and_derives_lab_name():
    r = run_local({}, stack="ci-run-42", doc=lab_document("cirun42"))
    lab = r.mocks.named("lab")
    up = shlex.split(lab.inputs["create"])
    assert "--link-rate" not in up and up[up.index("--name") + 1] == "cirun42", lab.urn
    assert up[up.index("--mode") + 1] == "classic" and up[up.index("--nodes") + 1] == "2", lab.urn


def test_another_lab_replaces_the_old_one_first():
    base = run_local({"labName": "lab1"}, doc=lab_document("lab1"))
    triggers = base.mocks.named("lab").inputs["triggers"]
    assert base.options["lab"].delete_before_replace is True, \
        "replace must run the old lab's `down` before the new `up` (same lab name)"
    for change in ({"nodes": "3"}, {"mode": "swarm"}, {"linkRate": "100mbit"}, {"mtu": "9000"},
                   {"labName": "lab2"}, {"subnet": "10.99.0.0/24"}):
        other = run_local({"labName": "lab1", **change}, doc=lab_document("lab1"))
        assert other.mocks.named("lab").inputs["triggers"] != triggers, f"{change} would not replace the lab"
    # The interpreter path and the checkout's place are not what makes a lab.
    assert not any(sys.executable in str(t) or str(PROJECT_DIR) in str(t) for t in triggers)


def test_exports_are_the_lab_document_unchanged():
    doc = lab_document("local", 2, "classic", "1gbit")
    r = run_local({"linkRate": "1gbit"}, doc=doc)
    assert tuple(r.exports) == outputs.KEYS
    assert r.exports == doc
    assert json.loads(outputs.dumps(r.exports)) == doc


@pytest.mark.parametrize("mode", ["classic", "swarm"])
def test_the_lab_makes_its_document_with_the_builder(mode):
    """What the local stack exports is what the lab printed: the builder's document."""
    from common.status import Status
    from stacks.local import lab, spec

    lab_spec = spec.LabSpec("lab7", nodes=3, mode=mode, link_rate="1gbit", mtu_bytes=9000)
    with built_documents() as built:
        doc = lab.Lab(lab_spec, Status(quiet=True)).outputs()
    assert built == [doc]
    assert [(n["name"], n["role"], n["address"]) for n in doc["nodes"]] == [
        ("lab7-node1", "manager", "10.213.0.11"), ("lab7-node2", "worker", "10.213.0.12"),
        ("lab7-node3", "worker", "10.213.0.13")]
    assert doc["nodes"][0]["docker_host"] == f"unix://{lab.node_socket('lab7', 1)}"
    assert (doc["link_rate"], doc["mtu_bytes"], doc["overlay_network"]) == ("1gbit", 9000, "overlay-bench")
    assert (doc["keystore"] is None) == (mode == "swarm")
    exports = run_local({"labName": "lab7", "nodes": "3", "mode": mode, "linkRate": "1gbit",
                         "mtu": "9000"}, doc=doc).exports
    assert exports == doc


def test_lab_output_that_breaks_the_contract_fails_the_program():
    bad = lab_document()
    bad["nodes"] = bad["nodes"][:1]
    with pytest.raises(outputs.OutputsError, match=r"stacks.local up` output.*invalid at nodes"):
        run_local({}, printed=json.dumps(bad))
    with pytest.raises(outputs.OutputsError, match=r"is not JSON"):
        run_local({}, printed="Bringing lab up ...\n")


# --- for real -------------------------------------------------------------------------------

def sh(command: str) -> subprocess.CompletedProcess:
    """Run a command string the way pulumi-command's local provider does."""
    return subprocess.run(["/bin/sh", "-c", command], cwd=PROJECT_DIR, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.root
def test_declared_commands_drive_the_real_lab(root):
    from stacks.local import lab as lab_api
    name = names.lab_name("pgm")
    first = run_local({"labName": name}, doc=lab_document(name)).mocks.named("lab").inputs
    second = run_local({"labName": name, "mode": "swarm"},
                       doc=lab_document(name, mode="swarm")).mocks.named("lab").inputs
    try:
        created = sh(first["create"])
        assert created.returncode == 0, created.stderr[-2000:]
        doc = outputs.loads(created.stdout, "create stdout")  # stdout is the document alone
        assert (doc["stack"], doc["mode"], len(doc["nodes"])) == (name, "classic", 2)
        status = sh(f"{shlex.quote(sys.executable)} -m stacks.local status --name {name}")
        assert json.loads(status.stdout) == doc, "pulumi's export would differ from `status`"

        # A replace as Pulumi runs it with delete_before_replace: old delete, then new create.
        assert sh(first["delete"]).returncode == 0
        assert lab_api.residue(name) == {}, "down left the old lab behind"
        replaced = sh(second["create"])
        assert replaced.returncode == 0, replaced.stderr[-2000:]
        new_doc = outputs.loads(replaced.stdout, "create stdout")
        assert new_doc["mode"] == "swarm" and new_doc["keystore"] is None

        gone = sh(second["delete"])
        assert gone.returncode == 0, gone.stderr[-2000:]
        assert lab_api.residue(name) == {}, "delete left the lab behind"
    finally:
        sh(f"{shlex.quote(sys.executable)} -m stacks.local down --name {name}")


@pytest.mark.parametrize("mode,link_rate", [("swarm", None), ("classic", "1gbit")])
def test_what_pulumi_sends_for_the_exports(mode, link_rate):
    """Pulumi's Python SDK drops a top-level output whose value is null (rpc.py: "properties
    that serialize to None ... don't exist"), so `pulumi stack output --json` lacks them.
    Seen with the real CLI. Only those go missing; with them read back as null the document
    is the lab's again."""
    import asyncio

    from google.protobuf import json_format
    from pulumi.runtime import rpc

    doc = lab_document("local", 2, mode, link_rate)
    exports = run_local({"mode": mode, **({"linkRate": link_rate} if link_rate else {})}, doc=doc).exports
    wire = json_format.MessageToDict(asyncio.run(rpc.serialize_properties(exports, {})))
    missing = set(outputs.KEYS) - set(wire)
    assert missing == {k for k, v in doc.items() if v is None}
    assert outputs.validate({**wire, **{k: None for k in missing}}) == doc
