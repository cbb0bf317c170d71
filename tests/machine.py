"""What this machine can do and runs (its kernel, its engine, its tools), probed for the tests.

A test asserts what the machine reports, never what one machine happened to have: the same
suite must hold on a kernel with ESP (Debian's own) and on one without (a minimal build).
"""
from __future__ import annotations

import functools
import os
import re
import subprocess

from tests import names

# What dockerd asks of the kernel for an encrypted overlay: an ESP security association with
# AES-GCM (libnetwork's overlay encryption, "rfc4106(gcm(aes))" with a 64-bit ICV).
_ESP_STATE = ["xfrm", "state", "add", "src", "192.0.2.1", "dst", "192.0.2.2", "proto", "esp",
              "spi", "0x1000", "reqid", "1", "mode", "transport",
              "aead", "rfc4106(gcm(aes))", "0x" + "01" * 20, "64"]


@functools.cache
def encrypted_overlay() -> tuple[bool, str]:
    """(True, "") when this kernel can carry Docker's encrypted overlay, else (False, why).

    Tried in a namespace made for the probe and deleted after it: nothing of the host's
    IPsec state is read or changed. Needs root, as every lab test does.
    """
    netns = names.lab_name("esp")
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        probe = subprocess.run(["ip", "-n", netns, *_ESP_STATE], capture_output=True, text=True)
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=True)
    if probe.returncode == 0:
        return True, ""
    return False, f"an ESP state with rfc4106(gcm(aes)) cannot be added: {probe.stderr.strip()}"


def engine_version() -> str:
    """The version `dockerd --version` reports ("20.10.24+dfsg1"), as the engine's API does."""
    out = subprocess.run(["dockerd", "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"version ([^,\s]+)", out)
    assert match, f"dockerd --version said {out!r}"
    return match.group(1)


def kernel_release() -> str:
    return os.uname().release


def tool_versions() -> dict[str, str]:
    """Each measuring tool's version, as the host's binaries report it (the bench image is
    made of them)."""
    from bench import tools

    out = subprocess.run(["sh", "-c", tools.versions_command()], capture_output=True, text=True).stdout
    found = tools.versions(out)
    assert set(found) == set(tools.REGISTRY), f"the tools report {out!r}"
    return found
