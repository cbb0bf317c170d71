"""Runs the Pulumi program (__main__.py) under Pulumi mocks and records what it declared.

No test lives here: the test_program_* modules import `run_program`. Every resource the
program registers is kept (type, name, inputs in wire names such as `userData`, URN, the
options it was declared with), and the exported outputs are resolved, so tests assert on
real values after the program has run. A program whose outputs never resolve fails here.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import runpy
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pulumi
import pulumi.runtime
from pulumi.runtime import rpc

PROJECT = Path(__file__).resolve().parent.parent
PUBLIC_IPS = {"keystore": "203.0.113.2"}
PRIVATE_IPS = {"keystore": "10.110.0.2"}
for _i in range(1, 51):
    PUBLIC_IPS[f"node{_i}"] = f"203.0.113.{10 + _i}"
    PRIVATE_IPS[f"node{_i}"] = f"10.110.0.{10 + _i}"


@dataclasses.dataclass
class Declared:
    typ: str
    name: str
    inputs: dict[str, Any]
    urn: str
    opts: pulumi.ResourceOptions | None = None
    secret_inputs: tuple[str, ...] = ()


def engine_facts(name: str, inputs: dict) -> str:
    """What stacks/remote_cluster.py's readiness check (`nodeN-ready`) prints on a Debian 12
    engine: its name, the MTU of the private interface and, in classic mode, the engine's
    cluster store (taken from the expected one the script compares with, if any)."""
    if not name.endswith("-ready") or "mtu_bytes=" not in inputs.get("create", ""):
        return ""
    facts = f"name=engine-{name[:-len('-ready')]}\nmtu_bytes=1500\n"
    if "ClusterStore" in inputs["create"]:
        expected = re.search(r'\[ "\$store" = (\S+) \]', inputs["create"])
        facts += f"cluster_store={expected.group(1) if expected else 'etcd://10.110.0.2:2379'}\n"
    return facts


class RecordingMocks(pulumi.runtime.Mocks):
    """Answers like the providers would and records every registration and invoke.

    `command_stdout(name, inputs)` gives the stdout of a pulumi-command resource (by
    default, the engine facts of the readiness checks and nothing for the others);
    `invoke(token, args)` the result of a provider function (wire names, as the provider
    returns them: `{"sshKeys": [...]}` for digitalocean:index/getSshKeys:getSshKeys).
    """

    def __init__(self, command_stdout: Callable[[str, dict], str] | None = None,
                 invoke: Callable[[str, dict], dict] | None = None):
        self.resources: list[Declared] = []
        self.calls: list[tuple[str, dict]] = []
        self.command_stdout = command_stdout or engine_facts
        self.invoke = invoke or (lambda token, args: {})

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        state = dict(args.inputs)
        if args.typ == "digitalocean:index/droplet:Droplet":
            state.update(ipv4Address=PUBLIC_IPS[args.name], ipv4AddressPrivate=PRIVATE_IPS[args.name],
                         dropletUrn=f"do:droplet:{args.name}")
        elif args.typ == "digitalocean:index/sshKey:SshKey":
            # DigitalOcean names a key by its MD5 fingerprint (ssh-keygen's, without "MD5:").
            state["fingerprint"] = md5_fingerprint(args.inputs["publicKey"])
        elif args.typ == "digitalocean:index/vpc:Vpc":
            state["urn"] = "do:vpc:1"
        elif args.typ.startswith("command:"):
            stdout = self.command_stdout(args.name, args.inputs)
            if args.typ == "command:remote:Command":
                # pulumi-command (since 0.8.2) marks a remote command's stdout secret, as its
                # connection (the private key) is.
                stdout = rpc.wrap_rpc_secret(stdout)
            state.update(stdout=stdout, stderr="")
        urn = f"urn:pulumi:test::overlay-bench::{args.typ}::{args.name}"
        self.resources.append(Declared(args.typ, args.name, dict(args.inputs), urn))
        return [f"{args.name}-id", state]

    def call(self, args: pulumi.runtime.MockCallArgs):
        self.calls.append((args.token, dict(args.args)))
        return self.invoke(args.token, dict(args.args))

    # Helpers for the tests ---------------------------------------------------------------
    def of_type(self, typ: str) -> list[Declared]:
        return [r for r in self.resources if r.typ == typ]

    def named(self, name: str) -> Declared:
        found = [r for r in self.resources if r.name == name]
        assert len(found) == 1, f"expected one resource named {name!r}, got {[r.urn for r in found]}"
        return found[0]


@dataclasses.dataclass
class Run:
    exports: dict[str, Any]
    mocks: RecordingMocks
    options: dict[str, pulumi.ResourceOptions]
    secret_outputs: dict[str, bool]


def run_program(config: dict[str, Any], stack: str = "test",
                command_stdout: Callable[[str, dict], str] | None = None,
                secret_config: dict[str, str] | None = None,
                invoke: Callable[[str, dict], dict] | None = None) -> Run:
    """Run __main__.py with `overlay-bench:` config `config` (and `secret_config`, full key
    names set as secrets); return resolved exports."""
    mocks = RecordingMocks(command_stdout, invoke)
    pulumi.runtime.set_mocks(mocks, project="overlay-bench", stack=stack, preview=False)
    all_config = {f"overlay-bench:{k}": v for k, v in config.items()}
    all_config.update(secret_config or {})
    pulumi.runtime.set_all_config(all_config, list(secret_config or {}))
    exported: dict[str, Any] = {}
    resolved: dict[str, Any] = {}
    options: dict[str, pulumi.ResourceOptions] = {}

    def record(args: pulumi.ResourceTransformationArgs):
        options[args.name] = args.opts
        return None

    secret: dict[str, bool] = {}
    unknown: list[str] = []

    async def resolve_exports() -> None:
        for key, value in exported.items():
            output = pulumi.Output.from_input(value)
            if not await output.is_known():
                unknown.append(key)
            secret[key] = await output.is_secret()
            resolved[key] = await output.future()

    @pulumi.runtime.test
    def program():
        pulumi.runtime.register_stack_transformation(record)
        # Config comes from set_all_config alone, not from a PULUMI_CONFIG* the shell may hold.
        clean_env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_CONFIG")}
        with mock.patch.object(pulumi, "export", side_effect=exported.__setitem__), \
                mock.patch.dict(os.environ, clean_env, clear=True):
            runpy.run_path(str(PROJECT / "__main__.py"), run_name="__main__")
        return asyncio.ensure_future(resolve_exports())

    program()
    assert exported, "the program exported nothing"
    assert not unknown and set(resolved) == set(exported), f"exports did not resolve: {unknown}"
    return Run(resolved, mocks, options, secret)


def program_error(config: dict[str, Any], stack: str = "test", **kwargs) -> tuple[str, RecordingMocks]:
    """Run the program expecting the clean failure Pulumi prints without a traceback.

    Returns the message and the mocks, so a test can check nothing was declared first.
    """
    mocks_seen: list[RecordingMocks] = []
    real_set_mocks = pulumi.runtime.set_mocks

    def keep(mocks, *args, **kw):
        mocks_seen.append(mocks)
        return real_set_mocks(mocks, *args, **kw)

    with mock.patch.object(pulumi.runtime, "set_mocks", side_effect=keep):
        try:
            run_program(config, stack, **kwargs)
        except pulumi.RunError as exc:
            return str(exc), mocks_seen[0]
    raise AssertionError(f"the program accepted config {config!r}")


@contextlib.contextmanager
def built_documents() -> Iterator[list[dict]]:
    """Every outputs document made with the builder (stacks.outputs.document) meanwhile."""
    from stacks import outputs

    built: list[dict] = []
    real = outputs.document

    def record(**kwargs):
        built.append(real(**kwargs))
        return built[-1]

    with mock.patch.object(outputs, "document", side_effect=record):
        yield built


def ssh_key_pair(directory: Path, name: str = "id_ed25519", passphrase: str = "") -> tuple[Path, Path]:
    """A real ed25519 key pair made by ssh-keygen: (public key path, private key path)."""
    private = directory / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", f"{name}@test",
                    "-f", str(private)], check=True)
    return private.with_name(name + ".pub"), private


def md5_fingerprint(public_key: str) -> str:
    """ssh-keygen's MD5 fingerprint of a public key line, as DigitalOcean shows it."""
    out = subprocess.run(["ssh-keygen", "-l", "-E", "md5", "-f", "-"], input=public_key, text=True,
                         capture_output=True, check=True).stdout
    return out.split()[1].removeprefix("MD5:")
