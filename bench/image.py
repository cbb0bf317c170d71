"""The bench image: the measuring tools (bench/tools/), built here with no registry.

Nothing can be pulled on the machines this project runs on, so the image is made from the
host's own binaries and their shared-library closure (`ldd`), written as a `docker save`
tarball by Python's tarfile and loaded onto each node with `images.load`. The build is
deterministic (sorted entries, mtime 0, uid/gid 0, fixed `created`): the same binaries give
the same bytes, so the image ID (sha256 of the config JSON) is the same on every node and
every build, and `ensure()` compares nodes by image ID.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import re
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable
from pathlib import Path

from bench import tools
from common.errors import UserError

IMAGE_NAME = "overlay-bench/tools:1"

# Bump when the layout below changes: it is part of the cache key.
BUILDER_VERSION = 1

# The tools (bench/tools/), plus sh and cat so that bench can read MTUs (/sys, /proc) inside
# a container.
BINARIES = (*tools.binaries(), "/bin/sh", "/usr/bin/cat")

# Not in `ldd`'s output but loaded at run time by glibc (name lookups) on some systems.
_OPTIONAL_LIBS: tuple[str, ...] = ()

_PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n"
_GROUP = "root:x:0:\nnogroup:x:65534:\n"
_CREATED = "1970-01-01T00:00:00Z"
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
         "s390x": "s390x"}


class ImageError(UserError):
    """The bench image cannot be built or loaded; the message says what to do."""


def _ldd(path: str) -> list[str]:
    """Absolute paths of the shared libraries `path` needs, the loader included."""
    try:
        out = subprocess.run(["ldd", path], capture_output=True, text=True, check=True).stdout
    except FileNotFoundError:
        raise ImageError("`ldd` not found: install libc-bin") from None
    except subprocess.CalledProcessError as exc:
        raise ImageError(f"ldd {path} failed: {exc.stderr.strip() or exc.stdout.strip()}") from None
    libs = []
    for line in out.splitlines():
        # "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux... (0x...)"
        m = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
        if m:
            libs.append(m.group(1))
        elif "not found" in line:
            raise ImageError(f"{path} needs a library that is missing here: {line.strip()}")
    return libs


def _inputs(binaries: Iterable[str] = BINARIES) -> list[str]:
    """Every file that goes into the image, as absolute paths inside the image."""
    missing = [b for b in binaries if not os.path.exists(b)]
    if missing:
        raise ImageError(f"missing {', '.join(missing)}: install the Debian packages "
                         f"{' '.join(tools.apt_packages())} (scripts/setup.sh does it)")
    files: set[str] = set()
    for b in binaries:
        files.add(b)
        files.update(_ldd(b))
    files.update(p for p in _OPTIONAL_LIBS if os.path.exists(p))
    return sorted(files)


def _tarinfo(name: str, *, type_: bytes = tarfile.REGTYPE, mode: int = 0o644,
             size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = type_
    info.mode = mode
    info.size = size
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _layer(files: list[str]) -> bytes:
    """The single filesystem layer, as deterministic tar bytes."""
    entries: dict[str, tuple[bytes, int]] = {}
    for path in files:
        # Store the content under the path the loader asks for (symlinks resolved), so the
        # layer needs no symlinks and no knowledge of the host's merged-/usr layout.
        real = os.path.realpath(path)
        with open(real, "rb") as f:
            entries[path.lstrip("/")] = (f.read(), os.stat(real).st_mode & 0o7777)
    entries["etc/passwd"] = (_PASSWD.encode(), 0o644)
    entries["etc/group"] = (_GROUP.encode(), 0o644)
    dirs = {"tmp", "etc", "root"}
    for name in entries:
        parts = name.split("/")[:-1]
        dirs.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(dirs | set(entries)):
            if name in dirs:
                # /tmp must be world-writable with the sticky bit: iperf3 -P creates files there.
                mode = 0o1777 if name == "tmp" else 0o755
                tar.addfile(_tarinfo(name + "/", type_=tarfile.DIRTYPE, mode=mode))
            else:
                data, mode = entries[name]
                tar.addfile(_tarinfo(name, mode=mode, size=len(data)), io.BytesIO(data))
    return buf.getvalue()


def _config(layer_digest: str) -> bytes:
    arch = _ARCH.get(platform.machine(), platform.machine())
    doc = {
        "architecture": arch,
        "os": "linux",
        "created": _CREATED,
        "config": {
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"],
            # Never run (bench gives every container its command); part of the image ID, so
            # unchanged: sessions stay resumable across versions of this code.
            "Cmd": ["/usr/bin/iperf3", "--version"],
            "Labels": {"overlay-bench.image": IMAGE_NAME},
        },
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created": _CREATED, "created_by": "bench.image from host binaries"}],
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _save_tarball(layer: bytes, out: Path) -> None:
    """Write the `docker save` format: manifest.json, config, one layer."""
    layer_hex = hashlib.sha256(layer).hexdigest()
    config = _config("sha256:" + layer_hex)
    config_hex = hashlib.sha256(config).hexdigest()
    repo, tag = IMAGE_NAME.rsplit(":", 1)
    members = {
        f"{layer_hex}/VERSION": b"1.0",
        f"{layer_hex}/layer.tar": layer,
        f"{config_hex}.json": config,
        "manifest.json": json.dumps([{"Config": f"{config_hex}.json", "RepoTags": [IMAGE_NAME],
                                      "Layers": [f"{layer_hex}/layer.tar"]}]).encode(),
        "repositories": json.dumps({repo: {tag: layer_hex}}).encode(),
    }
    with tarfile.open(out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        tar.addfile(_tarinfo(f"{layer_hex}/", type_=tarfile.DIRTYPE, mode=0o755))
        for name in sorted(members):
            data = members[name]
            tar.addfile(_tarinfo(name, size=len(data)), io.BytesIO(data))


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "overlay-bench"


def _digest(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _verified(tarball: Path) -> bool:
    """The cached tarball is whole: its sha256 is the one recorded when it was built (a
    truncated or bit-flipped archive, or one without a record, is not)."""
    try:
        recorded = tarball.with_name(tarball.name + ".sha256").read_text().strip()
        return _digest(tarball) == recorded
    except (OSError, UnicodeDecodeError):
        return False


def _write_atomically(cache: Path, out: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=cache, prefix=f".{out.name}-")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, out)  # atomic: a concurrent builder never sees half a file
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def build_tarball(cache_dir: str | os.PathLike | None = None) -> Path:
    """Return the path of the image tarball, building it if the binaries changed since, or
    if the cached one is damaged.

    The cache key is each input's path, size, mtime and inode (an apt upgrade changes
    them); hashing the contents (15 MB) on every call would cost a fifth of a second. The
    tarball's own sha256 is recorded beside it (`.sha256`) when it is built and checked
    before it is used (about 0.015 s): a damaged archive is built again.
    """
    files = _inputs()
    key = hashlib.sha256(f"builder {BUILDER_VERSION}\n".encode())
    for path in files:
        real = os.path.realpath(path)
        st = os.stat(real)
        key.update(f"{path}\0{real}\0{st.st_mode}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\n".encode())
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    out = cache / f"tools-{key.hexdigest()[:16]}.tar"
    if out.exists() and _verified(out):
        return out
    try:
        cache.mkdir(parents=True, exist_ok=True)
        _write_atomically(cache, out, lambda tmp: _save_tarball(_layer(files), tmp))
        digest = _digest(out)
        # Written after the tarball: a crash in between leaves a tarball without a record,
        # which is built again, never one taken for whole unchecked.
        _write_atomically(cache, out.with_name(out.name + ".sha256"),
                          lambda tmp: tmp.write_text(digest + "\n"))
    except OSError as exc:
        raise ImageError(f"cannot write the bench image to {cache}: {exc.strerror or exc}") from None
    return out


def tarball_image_id(tarball: str | os.PathLike) -> str:
    """The image ID ("sha256:...") a tarball made by build_tarball() loads as."""
    try:
        with tarfile.open(tarball) as tar:
            f = tar.extractfile("manifest.json")
            manifest = json.load(f) if f is not None else None
        return "sha256:" + manifest[0]["Config"].removesuffix(".json")
    except (OSError, tarfile.TarError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise ImageError(f"{tarball} is not a bench image archive ({type(exc).__name__}: {exc}): "
                         "remove it and run again") from None


def ensure(client, tarball: str | os.PathLike | None = None, name: str = IMAGE_NAME) -> str:
    """Make sure the engine behind `client` has the bench image; return its image ID.

    Loads the tarball only when the engine lacks that exact image ID under `name`.
    """
    import docker.errors

    path = Path(tarball) if tarball is not None else build_tarball()
    want = tarball_image_id(path)
    try:
        if client.images.get(name).id == want:
            return want
    except docker.errors.ImageNotFound:
        pass
    except docker.errors.APIError as exc:
        raise ImageError(f"cannot query images on {client.api.base_url}: {exc.explanation}") from None
    try:
        with open(path, "rb") as f:
            client.images.load(f)
        got = client.images.get(name).id
    except (docker.errors.APIError, docker.errors.ImageLoadError, OSError) as exc:
        detail = getattr(exc, "explanation", None) or str(exc)
        raise ImageError(f"loading the bench image {path} on {client.api.base_url} failed: "
                         f"{detail}") from None
    if got != want:
        raise ImageError(f"{name} on {client.api.base_url} has ID {got} after loading, "
                         f"expected {want}: remove the image there and retry")
    return want


