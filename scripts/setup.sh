#!/usr/bin/env bash
# One set-up for every entry point (make demo, make test, .ci/run): installs what is
# missing and nothing else, so a second run on the same machine takes seconds.
#   1. Debian packages: the engine, the key-value store, the measuring tools, iptables,
#      the SSH server (run by the lab and the tests themselves, never as a system service),
#      chromium (the report's browser test).
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
# chromium and its WebDriver: the test that opens report.html in a real headless browser.
APT_PACKAGES="docker.io:dockerd etcd-server:etcd $tool_packages
iptables:iptables iproute2:ip util-linux:nsenter kmod:modprobe python3-venv:- openssh-server:sshd
chromium:chromium chromium-driver:chromedriver"
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
  # No package starts a service while it is installed: the lab runs its own dockerd and
  # sshd in namespaces (a system dockerd would set FORWARD to DROP, a system sshd would
  # listen on every address). policy-rc.d exiting 101 is Debian's switch for that
  # (invoke-rc.d and deb-systemd-invoke obey it); one that is already there is kept.
  policy=/usr/sbin/policy-rc.d made_policy=
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# overlay-bench set-up: no service starts during its apt-get install\nexit 101\n' > "$policy"
    chmod 0755 "$policy"
    made_policy=1
    trap 'rm -f "$policy"' EXIT
  fi
  # --no-install-recommends: docker.io recommends git, cgroupfs-mount, ... which we do not need.
  apt-get install -y -q --no-install-recommends "${missing[@]}"
  if [ -n "$made_policy" ]; then rm -f "$policy"; trap - EXIT; fi
  # openssh-server enables the system SSH service for the next boot; when we are the ones
  # installing it, nobody relies on that service: Debian's switch keeps it off for good.
  if [[ " ${missing[*]} " == *" openssh-server "* ]]; then
    touch /etc/ssh/sshd_not_to_be_run
  fi
fi

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
  # The README's step by step runs `pulumi up` with no --stack: the local stack (with
  # Pulumi.local.yaml) is selected, made if missing. A stack the user selected stays selected.
  (. scripts/pulumi-env.sh
   if ! pulumi stack --show-name >/dev/null 2>&1; then
     pulumi stack select --create local >/dev/null
     say "Pulumi stack local selected (state in $OVERLAY_BENCH_PULUMI_STATE)"
   fi)
fi
say "set-up done"
