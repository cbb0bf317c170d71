#!/usr/bin/env bash
# One set-up for every entry point (make demo, make test, .ci/run): installs what is
# missing and nothing else, so a second run on the same machine takes seconds.
#   1. Debian packages: the engine, the key-value store, the measuring tools, iptables.
#   2. A Python virtualenv in .venv with requirements.txt.
#   3. The Pulumi toolchain (CLI, Python language host, command provider): scripts/setup-pulumi.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*"; }

if [ "$(id -u)" != 0 ]; then
  echo "overlay-bench set-up needs root (it installs packages and creates network namespaces): run it with sudo" >&2
  exit 1
fi

PY=${PYTHON:-python3}
# Debian package -> a command it provides (checked first, so nothing is reinstalled). The
# measuring tools' packages are named by their modules (bench/tools/, standard library only,
# so the system python3 reads them before .venv exists).
tool_packages=$("$PY" -m bench.tools apt-packages)
APT_PACKAGES="docker.io:dockerd etcd-server:etcd $tool_packages
iptables:iptables iproute2:ip util-linux:nsenter kmod:modprobe python3-venv:-"
missing=()
for pair in $APT_PACKAGES; do
  pkg=${pair%%:*} cmd=${pair##*:}
  if [ "$cmd" = "-" ]; then
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  elif ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$cmd" ] && [ ! -x "/sbin/$cmd" ]; then
    missing+=("$pkg")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  # --no-install-recommends: docker.io recommends git, cgroupfs-mount, ... which we do not need.
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# docker.io's postinst may start a root-namespace dockerd where systemd runs: the lab
# never uses it, and it would set FORWARD to DROP (see stacks/local).

if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  say "installing Python packages (requirements.txt)"
  .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
  echo "$want" > "$stamp"
fi

if [ -x scripts/setup-pulumi.sh ]; then
  scripts/setup-pulumi.sh
fi
say "set-up done"
