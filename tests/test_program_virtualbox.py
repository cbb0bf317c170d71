"""The virtualbox stack: under Pulumi mocks, the post's docker-machine commands, their
deletes, the missing-tool error, and the outputs filled from `docker-machine ip` and the
machines' TLS certificate directories; then the same command strings run for real by
`sh -c` (as pulumi-command's local.Command runs them) against stand-ins for docker-machine
and docker that record their arguments and keep machines in a directory: a machine that is
missing, running with an engine that answers, half made by a failed create, or gone."""
from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from stacks import outputs, virtualbox
from tests.test_program_support import built_documents, program_error, run_program

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning:pulumi_digitalocean.*"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning:pulumi_command.*")]

LOCAL = "command:local:Command"
SECRET_SIG = "4dabf18193072939515e22adb298388d"
TOKEN = "SWMTKN-1-virtualbox-worker-token"
IPS = {"keystore": "192.168.99.100", "node1": "192.168.99.101", "node2": "192.168.99.102",
       "node3": "192.168.99.103"}
CERTS = "/home/me/.docker/machine/machines"


@pytest.fixture
def tools(tmp_path: Path, monkeypatch) -> Path:
    """docker-machine, VBoxManage and docker on PATH (never run: the mocks answer)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("docker-machine", "VBoxManage", "docker"):
        path = bin_dir / tool
        path.write_text("#!/bin/sh\necho 'must not run in unit tests' >&2; exit 1\n")
        path.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))  # only these: the machine may have a real docker
    return bin_dir


def stdout(name: str, inputs: dict) -> str:
    if name in IPS:  # a machine: `docker-machine ip` then the certificate directory
        return f"Running pre-create checks...\n{IPS[name]}\n{CERTS}/mhs-{name}\n"
    return TOKEN + "\n" if name == "swarm-token" else ""


def run(cfg: dict):
    return run_program({"provider": "virtualbox", "machinePrefix": "mhs", **cfg}, "virtualbox",
                       command_stdout=stdout)


def create_args(command: str, name: str) -> list[str]:
    """The `docker-machine create ... NAME` inside a machine's create command."""
    found = re.search(rf"docker-machine create [^;]*? {re.escape(name)}(?=;| |$)", command)
    assert found, f"no `docker-machine create ... {name}` in {command!r}"
    return shlex.split(found.group(0))


def test_classic_machines_are_the_posts_docker_machine_commands(tools):
    r = run({})
    keystore = r.mocks.named("keystore")
    create = keystore.inputs["create"]
    assert "docker-machine create -d virtualbox --virtualbox-memory 1024 --virtualbox-cpu-count 1 mhs-keystore" \
        in create, keystore.urn
    assert ("(config=$(docker-machine config mhs-keystore) && docker $config run -d --name consul --restart always "
            "-p 8500:8500 -h consul hashicorp/consul:1.22.7 agent -server -bootstrap") in create, keystore.urn
    assert keystore.inputs["delete"] == "docker-machine rm -f -y mhs-keystore", keystore.urn

    store = f"consul://{IPS['keystore']}:8500"
    master = r.mocks.named("node1")
    args = create_args(master.inputs["create"], "mhs-node1")
    assert args[:4] == ["docker-machine", "create", "-d", "virtualbox"], master.urn
    assert args[-1] == "mhs-node1", master.urn
    for flag in ["--swarm", "--swarm-master", f"--swarm-discovery={store}",
                 f"--engine-opt=cluster-store={store}", "--engine-opt=cluster-advertise=eth1:2376"]:
        assert flag in args, f"{master.urn}: {flag} missing from {args}"
    node = r.mocks.named("node2")
    args = create_args(node.inputs["create"], "mhs-node2")
    assert "--swarm" in args and "--swarm-master" not in args, node.urn
    assert f"--engine-opt=cluster-store={store}" in args and args[-1] == "mhs-node2", node.urn
    for name in ("node1", "node2"):
        res = r.mocks.named(name)
        assert res.inputs["delete"] == f"docker-machine rm -f -y mhs-{name}", res.urn
        assert res.inputs["create"] == virtualbox.machine_create(
            virtualbox.VirtualBoxSettings("mhs"), f"mhs-{name}",
            ["--swarm"] + (["--swarm-master"] if name == "node1" else []) +
            [f"--swarm-discovery={store}", f"--engine-opt=cluster-store={store}",
             "--engine-opt=cluster-advertise=eth1:2376"]), res.urn
        # Same machine name after a replace: the old machine must go first.
        assert r.options[name].delete_before_replace is True, res.urn
        assert "docker-machine ip mhs-" + name in res.inputs["create"], res.urn

    net = r.mocks.named("overlay-network")
    assert net.inputs["create"].endswith(
        "(config=$(docker-machine config mhs-node1) && docker $config network create -d overlay overlay-bench)"), \
        net.urn


def test_classic_outputs_from_machine_ip_and_certs(tools):
    r = run({"nodes": "3"})
    doc = outputs.validate(r.exports)
    assert tuple(r.exports) == outputs.KEYS
    assert doc["keystore"] == {"name": "mhs-keystore", "address": IPS["keystore"],
                               "url": f"consul://{IPS['keystore']}:8500"}
    assert doc["nodes"] == [
        {"name": f"mhs-node{i}", "role": "manager" if i == 1 else "worker",
         "address": IPS[f"node{i}"], "docker_host": f"tcp://{IPS[f'node{i}']}:2376",
         "tls_cert_path": f"{CERTS}/mhs-node{i}", "ssh_key_path": None}
        for i in (1, 2, 3)]
    assert (doc["provider"], doc["mode"], doc["overlay_network"]) == ("virtualbox", "classic", "overlay-bench")


@pytest.mark.parametrize("mode", ["classic", "swarm"])
def test_exports_are_the_builders_document(tools, mode):
    with built_documents() as built:
        r = run({"mode": mode})
    assert len(built) == 1 and r.exports == built[0]
    assert [key for key, secret in r.secret_outputs.items() if secret] == []


def test_machine_options_reach_docker_machine(tools):
    r = run({"virtualboxMemoryMb": "2048", "virtualboxCpus": "2",
             "boot2dockerUrl": "file:///isos/boot2docker-v19.03.12.iso",
             "virtualboxHostonlyCidr": "192.168.56.1/24"})
    for name in ("keystore", "node1", "node2"):
        create = r.mocks.named(name).inputs["create"]
        assert ("--virtualbox-memory 2048 --virtualbox-cpu-count 2 --virtualbox-boot2docker-url "
                "file:///isos/boot2docker-v19.03.12.iso --virtualbox-hostonly-cidr 192.168.56.1/24") \
            in create, name


def test_swarm_mode_init_token_join(tools):
    r = run({"mode": "swarm"})
    names = sorted(res.name for res in r.mocks.of_type(LOCAL))
    assert names == ["node1", "node2", "node2-join", "overlay-network", "swarm-init", "swarm-token"]
    for name in ("node1", "node2"):
        assert "--swarm" not in r.mocks.named(name).inputs["create"], name
    init = r.mocks.named("swarm-init")
    assert f"docker $config swarm init --advertise-addr {IPS['node1']}" in init.inputs["create"], init.urn
    token = r.mocks.named("swarm-token")
    assert token.inputs["create"] == virtualbox.on_machine("mhs-node1", "swarm join-token -q worker")
    assert token.inputs["logging"] == "none", token.urn
    assert "stdout" in r.options["swarm-token"].additional_secret_outputs, token.urn
    join = r.mocks.named("node2-join")
    env = join.inputs["environment"]
    assert SECRET_SIG in env and env["value"] == {"SWARM_TOKEN": TOKEN}, f"{join.urn}: token not secret"
    assert TOKEN not in join.inputs["create"], join.urn
    assert virtualbox.on_machine("mhs-node2", f"swarm join --token \"$SWARM_TOKEN\" "
                                 f"--advertise-addr eth1 {IPS['node1']}:2377") in join.inputs["create"], join.urn
    assert "--attachable overlay-bench" in r.mocks.named("overlay-network").inputs["create"]
    doc = outputs.validate(r.exports)
    assert doc["keystore"] is None and doc["mode"] == "swarm"
    assert TOKEN not in json.dumps(doc)


@pytest.mark.parametrize("missing", ["docker-machine", "VBoxManage", "docker"])
def test_missing_tool_is_one_clear_error(tools, missing):
    (tools / missing).unlink()
    message, mocks = program_error({"provider": "virtualbox"}, "virtualbox")
    assert f"needs `{missing}`, which is not on PATH" in message and "install" in message
    assert "\n" not in message
    assert not mocks.resources, "machines declared before the check"


# --- the command strings, run for real against stand-ins ---------------------------------------

# docker-machine 0.16.2 as far as the stack uses it. A machine is a directory holding its
# state (Running, Stopped, Error), its address, and `engine` while its engine answers.
# `rm` without -f fails on a machine that does not exist; with -f it only logs the error
# and exits 0 (commands/rm.go: collectError, and `len(errorOccurred) > 0 && !force`).
FAKE_DOCKER_MACHINE = r'''#!/bin/sh
D="$FAKE_MACHINES"; echo "docker-machine $*" >> "$D/log"
cmd=$1; shift
for name; do :; done
m="$D/machines/$name"
missing() { echo "Host does not exist: \"$name\"" >&2; exit 1; }
case "$cmd" in
  status) [ -d "$m" ] || missing; cat "$m/state";;
  inspect) [ -d "$m" ] || missing; [ "$1" = --format ] && echo "$D/certs/$name" || echo '{}';;
  ip) [ -d "$m" ] || missing; cat "$m/ip";;
  config) [ -d "$m" ] || missing
          [ "$(cat "$m/state")" = Running ] || { echo "Error checking TLS connection: Host is not running" >&2; exit 1; }
          printf -- '--tlsverify\n--tlscacert="%s/ca.pem"\n-H=tcp://%s:2376\n' "$D/certs/$name" "$(cat "$m/ip")";;
  create) [ -d "$m" ] && { echo "Host already exists: \"$name\"" >&2; exit 1; }
          mkdir -p "$m" "$D/certs/$name"; echo Running > "$m/state"
          echo "192.168.99.$((100 + $(ls "$D/machines" | wc -l)))" > "$m/ip"
          if [ -e "$D/create-fails" ]; then echo "Error creating machine: pretend VBoxManage failed" >&2; exit 1; fi
          touch "$m/engine";;
  rm) force=no; for a; do [ "$a" = -f ] && force=yes; done
      if [ -d "$m" ]; then rm -rf "$m"; echo "Successfully removed $name"
      else echo "Error removing host \"$name\": Host does not exist: \"$name\"" >&2; [ $force = yes ] || exit 1; fi;;
  *) echo "unexpected: $cmd" >&2; exit 3;;
esac
'''

# The docker CLI: it must always be pointed at a machine (-H=tcp://IP:2376); `version`
# answers only where that machine's engine does; `inspect` finds nothing.
FAKE_DOCKER = r'''#!/bin/sh
D="$FAKE_MACHINES"; echo "docker $*" >> "$D/log"
host=; for a; do case "$a" in -H=*) host=${a#-H=};; esac; done
[ -n "$host" ] || { echo "docker: no -H: this would be the local default engine" >&2; exit 97; }
ip=${host#tcp://}; ip=${ip%:2376}
for m in "$D"/machines/*; do
  if [ "$(cat "$m/ip" 2>/dev/null)" = "$ip" ] && [ -e "$m/engine" ]; then
    for a; do case "$a" in inspect) exit 1;; esac; done
    exit 0
  fi
done
echo "Cannot connect to the Docker daemon at $host" >&2; exit 1
'''


class Machines:
    """The stand-ins on PATH and the directory their machines live in."""

    def __init__(self, root: Path):
        self.root, self.bin = root, root / "bin"
        (root / "machines").mkdir(parents=True)
        self.bin.mkdir()
        for tool, script in (("docker-machine", FAKE_DOCKER_MACHINE), ("docker", FAKE_DOCKER)):
            (self.bin / tool).write_text(script)
            (self.bin / tool).chmod(0o755)
        (root / "log").touch()

    def sh(self, command: str) -> subprocess.CompletedProcess:
        """`sh -c COMMAND`, as pulumi-command's local.Command runs create and delete."""
        return subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=30,
                              env={"PATH": f"{self.bin}:/usr/bin:/bin", "FAKE_MACHINES": str(self.root)})

    def make(self, name: str, state: str = "Running", engine: bool = True, ip: str = "192.168.99.150") -> None:
        m = self.root / "machines" / name
        m.mkdir()
        (m / "state").write_text(state + "\n")
        (m / "ip").write_text(ip + "\n")
        if engine:
            (m / "engine").touch()

    def log(self) -> list[str]:
        lines = (self.root / "log").read_text().splitlines()
        (self.root / "log").write_text("")
        return lines

    def exists(self, name: str) -> bool:
        return (self.root / "machines" / name).is_dir()

    def answers(self, name: str) -> bool:
        return (self.root / "machines" / name / "engine").exists()


@pytest.fixture
def machines(tmp_path) -> Machines:
    return Machines(tmp_path / "fake")


SETTINGS = virtualbox.VirtualBoxSettings("mhs")


def creates_and_removes(log: list[str], name: str) -> tuple[int, int]:
    creates = sum(1 for ln in log if ln.startswith("docker-machine create") and ln.endswith(f" {name}"))
    removes = sum(1 for ln in log if ln == f"docker-machine rm -f -y {name}")
    return creates, removes


def test_a_missing_machine_is_created_and_its_address_and_certificates_printed(machines):
    proc = machines.sh(virtualbox.machine_create(SETTINGS, "mhs-node1", ["--swarm"]))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["192.168.99.101", f"{machines.root}/certs/mhs-node1"]
    log = machines.log()
    assert creates_and_removes(log, "mhs-node1") == (1, 0), log
    assert "docker-machine create -d virtualbox --virtualbox-memory 1024 --virtualbox-cpu-count 1 " \
           "--swarm mhs-node1" in log
    assert machines.answers("mhs-node1")


def test_a_running_machine_whose_engine_answers_is_kept(machines):
    machines.make("mhs-node1", ip="192.168.99.150")
    proc = machines.sh(virtualbox.machine_create(SETTINGS, "mhs-node1", []))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "192.168.99.150"
    log = machines.log()
    assert creates_and_removes(log, "mhs-node1") == (0, 0), log
    assert "docker --tlsverify --tlscacert=" in "\n".join(log) and any(
        ln.endswith("-H=tcp://192.168.99.150:2376 version") for ln in log), log


@pytest.mark.parametrize("state, engine", [("Running", False), ("Error", False), ("Stopped", True)])
def test_a_half_made_machine_is_removed_and_made_again(machines, state, engine):
    machines.make("mhs-node1", state=state, engine=engine)
    proc = machines.sh(virtualbox.machine_create(SETTINGS, "mhs-node1", []))
    assert proc.returncode == 0, proc.stderr
    log = machines.log()
    assert creates_and_removes(log, "mhs-node1") == (1, 1), log
    assert log.index("docker-machine rm -f -y mhs-node1") < next(
        i for i, ln in enumerate(log) if ln.startswith("docker-machine create")), log
    assert machines.answers("mhs-node1")


def test_a_failed_create_fails_and_the_next_up_repairs_what_it_left(machines):
    """A failed `docker-machine create` leaves the machine registered without an engine:
    that `pulumi up` fails; the next one removes it and creates it again."""
    (machines.root / "create-fails").touch()
    first = machines.sh(virtualbox.machine_create(SETTINGS, "mhs-node1", []))
    assert first.returncode != 0 and "pretend VBoxManage failed" in first.stderr
    assert machines.exists("mhs-node1") and not machines.answers("mhs-node1")
    (machines.root / "create-fails").unlink()
    machines.log()
    second = machines.sh(virtualbox.machine_create(SETTINGS, "mhs-node1", []))
    assert second.returncode == 0, second.stderr
    assert creates_and_removes(machines.log(), "mhs-node1") == (1, 1)
    assert machines.answers("mhs-node1")


def test_setup_runs_on_the_machine_after_it_answers(machines):
    """The key-store machine's Consul: started on that machine's engine, never elsewhere."""
    consul = (f"{virtualbox.on_machine('mhs-keystore', 'inspect consul')} >/dev/null 2>&1 || "
              + virtualbox.on_machine("mhs-keystore", "run -d --name consul hashicorp/consul:1.22.7"))
    proc = machines.sh(virtualbox.machine_create(SETTINGS, "mhs-keystore", [], consul))
    assert proc.returncode == 0, proc.stderr
    runs = [ln for ln in machines.log() if ln.startswith("docker ") and " run -d --name consul" in ln]
    assert len(runs) == 1 and "-H=tcp://192.168.99.101:2376" in runs[0], runs


def test_delete_succeeds_whether_or_not_the_machine_is_still_there(machines):
    machines.make("mhs-node1")
    assert machines.sh(virtualbox.machine_delete("mhs-node1")).returncode == 0
    assert not machines.exists("mhs-node1")
    gone = machines.sh(virtualbox.machine_delete("mhs-node1"))
    assert gone.returncode == 0, gone.stderr  # `pulumi destroy` goes on
    # What the stack ran before: fails on a machine that is gone, and destroy with it.
    assert machines.sh("docker-machine rm -y mhs-node1").returncode != 0


def test_docker_never_falls_back_to_the_local_engine(machines):
    """`docker $(docker-machine config NAME) ...` would run `docker ...` against this
    machine's own engine when config fails; on_machine does not run docker at all then."""
    proc = machines.sh(virtualbox.on_machine("mhs-gone", "network create -d overlay overlay-bench"))
    assert proc.returncode != 0 and "Host does not exist" in proc.stderr
    assert not [ln for ln in machines.log() if ln.startswith("docker ")]
    machines.make("mhs-node1", ip="192.168.99.160")
    assert machines.sh(virtualbox.on_machine("mhs-node1", "network create -d overlay x")).returncode == 0
    assert machines.log()[-1].endswith("-H=tcp://192.168.99.160:2376 network create -d overlay x")
