#!/usr/bin/env bash
# Makes the Pulumi toolchain of the local stack available: the `pulumi` CLI, the Python
# language host (pulumi-language-python + pulumi-language-python-exec) and the
# pulumi-command provider, at the versions in toolchain/versions.env. In this order:
#   1. what is installed already (a previous build in the cache, or a CLI on PATH);
#   2. when get.pulumi.com answers, the official installer;
#   3. otherwise a build from Go modules (toolchain/), cached in
#      ${XDG_CACHE_HOME:-$HOME/.cache}/overlay-bench/pulumi/v<version>/ (delete it to rebuild).
# Idempotent; a second run takes well under a second. Run from scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
. scripts/pulumi-env.sh   # PATH (cache first), versions, local backend, no network

# Go's own installer puts it in /usr/local/go, which a non-login shell may not have on PATH.
[ -x /usr/local/go/bin/go ] && ! command -v go >/dev/null 2>&1 && PATH="$PATH:/usr/local/go/bin"
say() { printf '==> %s\n' "$*"; }
die() { printf 'setup-pulumi: %s\n' "$*" >&2; exit 1; }

# The CLI and the Python SDK are released together: one version for both.
grep -qx "pulumi==$PULUMI_VERSION" requirements.txt ||
  die "requirements.txt does not pin pulumi==$PULUMI_VERSION (toolchain/versions.env): make them agree"
grep -qx "pulumi-command==$PULUMI_COMMAND_VERSION" requirements.txt ||
  die "requirements.txt does not pin pulumi-command==$PULUMI_COMMAND_VERSION (toolchain/versions.env): make them agree"

bin=$OVERLAY_BENCH_PULUMI_BIN
cache=$(dirname "$bin")
stamp=$cache/build.stamp
plugin_dir=${PULUMI_HOME:-$HOME/.pulumi}/plugins/resource-command-v$PULUMI_COMMAND_VERSION

# What a build depends on: versions, Go version, and the wrapper module's sources.
build_id() {
  {
    echo "pulumi=$PULUMI_VERSION command=$PULUMI_COMMAND_VERSION"
    go version 2>/dev/null || echo "no go"
    (cd toolchain && find . -type f \( -name '*.go' -o -name 'go.mod' -o -name 'go.sum' -o -name '*.env' \) |
      LC_ALL=C sort | xargs sha256sum)
  } | sha256sum | cut -d' ' -f1
}

# The provider as the engine finds it: an installed plugin of the pinned version.
command_plugin_ok() {
  [ -x "$plugin_dir/pulumi-resource-command" ]
}

install_command_plugin() {  # $1: provider binary
  if [ -x "$plugin_dir/pulumi-resource-command" ] && cmp -s "$1" "$plugin_dir/pulumi-resource-command"; then
    return
  fi
  say "installing the command provider v$PULUMI_COMMAND_VERSION as a Pulumi plugin"
  pulumi plugin install resource command "v$PULUMI_COMMAND_VERSION" --file "$1" --reinstall >/dev/null
}

# 1a. Our own build, still valid: the warm path (no go command needed unless sources changed).
if [ -f "$stamp" ] && [ -x "$bin/pulumi" ] && [ -x "$bin/pulumi-language-python" ] &&
   [ -x "$bin/pulumi-language-python-exec" ] && [ -x "$cache/provider/pulumi-resource-command" ]; then
  if [ "$(cat "$stamp")" = "$(build_id)" ]; then
    install_command_plugin "$cache/provider/pulumi-resource-command"
    say "Pulumi v$PULUMI_VERSION toolchain: cached build in $cache"
    exit 0
  fi
fi

# 1b. A CLI installed some other way (official installer, package manager) at our version,
# with the Python language host beside it or on PATH and the command plugin installed.
# (Our cache directory is not "installed": a build there with a stale stamp is rebuilt.)
installed=$(PATH=${PATH//"$bin:"/} command -v pulumi || true)
if [ -n "$installed" ] && [ "$("$installed" version 2>/dev/null)" = "v$PULUMI_VERSION" ]; then
  host=$(PATH=${PATH//"$bin:"/} command -v pulumi-language-python || true)
  if [ -n "$host" ] && [ -x "$(dirname "$host")/pulumi-language-python-exec" ] && command_plugin_ok; then
    say "Pulumi v$PULUMI_VERSION toolchain: installed at $installed"
    exit 0
  fi
fi

# 2. The official installer, when its host answers (a short probe: offline machines say no
# at once or time out). OVERLAY_BENCH_OFFLINE=1 skips the probe.
if [ "${OVERLAY_BENCH_OFFLINE:-0}" != 1 ] && curl -fsS -m 3 -o /dev/null https://get.pulumi.com/ 2>/dev/null; then
  say "installing Pulumi v$PULUMI_VERSION with the official installer"
  curl -fsSL https://get.pulumi.com/ | sh -s -- --version "$PULUMI_VERSION"
  export PATH="$HOME/.pulumi/bin:$PATH"
  pulumi plugin install resource command "v$PULUMI_COMMAND_VERSION"
  exit 0
fi

# 3. Build from Go modules (no internet; the Go module proxy is enough).
command -v go >/dev/null 2>&1 ||
  die "no Pulumi v$PULUMI_VERSION found, get.pulumi.com is unreachable and there is no Go toolchain: install Go 1.26+ (https://go.dev/dl) and run this again"
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9   # two set-ups at once: the second waits and then finds the first one's build
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$(build_id)" ] && [ -x "$bin/pulumi" ]; then
  install_command_plugin "$cache/provider/pulumi-resource-command"
  say "Pulumi v$PULUMI_VERSION toolchain: cached build in $cache"
  exit 0
fi
say "building Pulumi v$PULUMI_VERSION from Go modules into $cache (first time only: about a quarter of an hour on 2 cores)"
new=$(mktemp -d "$cache/.build.XXXXXX")
trap 'rm -rf "$new"' EXIT
mkdir -p "$new/bin" "$new/provider"
cd toolchain
# -mod=readonly: go.sum is committed, builds are reproducible; -buildvcs=false: the
# binaries do not depend on the state of this git checkout.
export GOFLAGS="-mod=readonly -trimpath -buildvcs=false"
start=$(date +%s)
# -s -w: no symbol tables, smaller binaries (the CLI is ~116 MB). The version ldflags are
# what `pulumi version`, the engine and the Automation API check.
go build -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_VERSION" \
  -o "$new/bin/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
go build -ldflags "-s -w -X main.version=$PULUMI_VERSION" \
  -o "$new/bin/pulumi-language-python" ./cmd/pulumi-language-python
go build -ldflags "-s -w -X main.version=$PULUMI_COMMAND_VERSION" \
  -o "$new/provider/pulumi-resource-command" ./cmd/pulumi-resource-command
# The language host runs programs through this shim from the Python SDK's Go module.
sdk_dir=$(go list -m -f '{{.Dir}}' github.com/pulumi/pulumi/sdk/v3)
install -m 0755 "$sdk_dir/python/cmd/pulumi-language-python-exec" "$new/bin/pulumi-language-python-exec"
cd "$repo"
build_id > "$new/build.stamp"
rm -rf "$bin" "$cache/provider"
mv "$new/bin" "$bin"
mv "$new/provider" "$cache/provider"
mv "$new/build.stamp" "$stamp"
say "built in $(( $(date +%s) - start )) s: $("$bin/pulumi" version)"
install_command_plugin "$cache/provider/pulumi-resource-command"
say "Pulumi v$PULUMI_VERSION toolchain: cached build in $cache"
