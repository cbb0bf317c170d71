"""bench.image: a deterministic tarball, loaded on a real engine, the tools run in it."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import time

import docker
import pytest

from bench import image, tools
from tests import names

# The throwaway engine's namespace: a name no other test run on this machine uses.
NETNS = names.lab_name("bimg")


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """A throwaway dockerd in its own network namespace (no bridge, no iptables changes)."""
    if os.geteuid() != 0 or shutil.which("dockerd") is None:
        pytest.fail("needs root and dockerd (Debian docker.io): run scripts/setup.sh as root")
    root = tmp_path_factory.mktemp("engine")
    sock = root / "docker.sock"
    subprocess.run(["ip", "netns", "add", NETNS], check=True)
    subprocess.run(["ip", "-n", NETNS, "link", "set", "lo", "up"], check=True)
    log = open(root / "dockerd.log", "wb")
    proc = subprocess.Popen(
        # nsenter, not `ip netns exec`: the latter remounts /sys and dockerd fails ("Devices
        # cgroup isn't mounted").
        ["nsenter", f"--net=/var/run/netns/{NETNS}", "dockerd",
         "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
         "--pidfile", str(root / "pid"), "-H", f"unix://{sock}",
         # No bridge and no iptables: this engine only loads images and runs network-less.
         "--bridge=none", "--iptables=false"],
        stdout=log, stderr=subprocess.STDOUT)
    client = None
    try:
        deadline = time.monotonic() + 30
        while client is None:
            try:
                # The SDK asks the engine for its API version on creation: retry until it answers.
                client = docker.DockerClient(base_url=f"unix://{sock}", timeout=30)
            except docker.errors.DockerException:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"dockerd did not start: {(root / 'dockerd.log').read_text()[-2000:]}")
                time.sleep(0.1)
        yield client
    finally:
        if client is not None:
            client.close()
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        subprocess.run(["umount", "-R", "-l", str(root / "exec")], capture_output=True)
        subprocess.run(["umount", "-R", "-l", str(root / "data")], capture_output=True)
        subprocess.run(["ip", "netns", "del", NETNS], check=True)


def test_tarball_is_deterministic(tmp_path):
    first = image.build_tarball(tmp_path / "a")
    second = image.build_tarball(tmp_path / "b")
    assert first.read_bytes() == second.read_bytes()
    # Cached: a second call in the same directory returns the same file without rebuilding.
    mtime = first.stat().st_mtime_ns
    assert image.build_tarball(tmp_path / "a") == first
    assert first.stat().st_mtime_ns == mtime


def test_tarball_layout(tmp_path):
    path = image.build_tarball(tmp_path)
    with tarfile.open(path) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))
        assert manifest[0]["RepoTags"] == [image.IMAGE_NAME]
        config = json.load(outer.extractfile(manifest[0]["Config"]))
        assert config["created"] == "1970-01-01T00:00:00Z"
        layer = tarfile.open(fileobj=outer.extractfile(manifest[0]["Layers"][0]))
        members = {m.name.rstrip("/"): m for m in layer.getmembers()}
    for binary in tools.binaries():
        assert members[binary.lstrip("/")].mode & 0o111, binary
    assert members["tmp"].isdir() and members["tmp"].mode == 0o1777
    assert "lib64/ld-linux-x86-64.so.2" in members or "lib/ld-linux-aarch64.so.1" in members
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 for m in members.values())
    assert [m for m in members] == sorted(members)


def test_ensure_loads_once_and_tools_run(engine, tmp_path):
    tarball = image.build_tarball(tmp_path)
    image_id = image.ensure(engine, tarball)
    assert image_id == image.tarball_image_id(tarball)
    assert engine.images.get(image.IMAGE_NAME).id == image_id
    # Second call: same ID, nothing loaded (the image's tag would be re-pointed otherwise).
    assert image.ensure(engine, tarball) == image_id

    ctr = engine.containers.run(
        image.IMAGE_NAME, ["sh", "-c", tools.versions_command()],
        network_mode="none", detach=True)
    try:
        ctr.wait(timeout=30)  # iperf --version exits 1: check the output instead
        out = ctr.logs().decode()
    finally:
        ctr.remove(force=True)
    assert set(tools.versions(out)) == set(tools.REGISTRY), out


def test_iperf3_parallel_streams_in_image(engine, tmp_path):
    """iperf3 -P needs a writable /tmp in the image; run a 1 s loopback test inside it."""
    image.ensure(engine, image.build_tarball(tmp_path))
    ctr = engine.containers.run(
        image.IMAGE_NAME,
        # -D returns before the server listens: retry while the connection is refused.
        ["sh", "-c", 'iperf3 -s -1 -D; while :; do out=$(iperf3 -c 127.0.0.1 -P 2 -t 1 -J); '
                     'case "$out" in *"Connection refused"*) ;; *) echo "$out"; break;; esac; done'],
        network_mode="none", detach=True)
    try:
        ctr.wait(timeout=60)
        doc = json.loads(ctr.logs(stderr=False).decode())
    finally:
        ctr.remove(force=True)
    assert "error" not in doc, doc.get("error")
    assert doc["end"]["sum_received"]["bits_per_second"] > 0


def test_ensure_reports_a_load_failure(engine, tmp_path):
    broken = tmp_path / "broken.tar"
    good = image.build_tarball(tmp_path)
    # A tarball whose manifest names a layer that is not there: the engine refuses it.
    with tarfile.open(good) as src, tarfile.open(broken, "w") as dst:
        for m in src.getmembers():
            if m.name.endswith("layer.tar"):
                continue
            dst.addfile(m, src.extractfile(m) if m.isfile() else None)
    engine.images.remove(image.IMAGE_NAME, force=True)
    with pytest.raises(image.ImageError, match="loading the bench image"):
        image.ensure(engine, broken)


def _damage(path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncated":  # a copy or a build cut short
        path.write_bytes(data[: len(data) // 2])
    elif how == "bit-flipped":  # a bad disk: one bit in the layer, the tar structure intact
        data[len(data) // 2] ^= 0x01
        path.write_bytes(data)
    elif how == "unrecorded":  # a tarball cached by a version that recorded no digest
        path.with_name(path.name + ".sha256").unlink()
    elif how == "emptied":
        path.write_bytes(b"")


@pytest.mark.parametrize("how", ["truncated", "bit-flipped", "unrecorded", "emptied"])
def test_a_damaged_cached_archive_is_built_again(tmp_path, how):
    good = image.build_tarball(tmp_path)
    data = good.read_bytes()
    assert good.with_name(good.name + ".sha256").read_text().strip() == hashlib.sha256(data).hexdigest()
    _damage(good, how)
    again = image.build_tarball(tmp_path)
    assert again == good and again.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == [good.name, good.name + ".sha256"]


def test_a_damaged_archive_is_one_error_not_a_tarfile_traceback(tmp_path):
    broken = tmp_path / "broken.tar"
    broken.write_bytes(b"not a tar archive")
    with pytest.raises(image.ImageError, match=r"broken.tar is not a bench image archive \(ReadError"):
        image.tarball_image_id(broken)


@pytest.mark.parametrize("how", ["truncated", "bit-flipped"])
def test_a_damaged_cached_archive_is_rebuilt_and_loads_on_an_engine(engine, tmp_path, how):
    tarball = image.build_tarball(tmp_path)
    want = image.tarball_image_id(tarball)
    _damage(tarball, how)
    # The engine lacks the image: what is loaded must be the rebuilt archive.
    with contextlib.suppress(docker.errors.ImageNotFound):
        engine.images.remove(image.IMAGE_NAME, force=True)
    tarball = image.build_tarball(tmp_path)
    assert image.ensure(engine, tarball) == want == engine.images.get(image.IMAGE_NAME).id
