#!/usr/bin/env bash
# `make demo`: the 2015 experiment on the local lab, end to end.
#   pulumi up (local stack) -> python -m bench -> python -m analysis -> pulumi destroy,
# once on links shaped to 1 Gbit/s (the 2015 droplets' NIC) and once on the raw veth.
# Whatever happens, the lab is destroyed and the partial results are pointed at.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/pulumi-env.sh

PY=.venv/bin/python
STACK=${STACK:-local}
PROFILES=${PROFILES:-"1gbit unshaped"}
BENCH_ARGS=${BENCH_ARGS:-}          # e.g. BENCH_ARGS="--runs 3 --duration 5" for a quicker look
RESULTS=${RESULTS:-results/demo-$(date -u +%Y%m%d-%H%M%S)}
say() { printf '\n==> %s\n' "$*" >&2; }

# Classic mode (the 2015 topology) needs an engine older than 23.0.
major=$(dockerd --version | sed -E 's/.*version ([0-9]+)\..*/\1/')
MODE=classic
if [ "$major" -ge 23 ]; then
  MODE=swarm
  say "notice: dockerd $major.x has no --cluster-store (removed in 23.0): using swarm mode"
fi

mkdir -p "$RESULTS"
tmp=$(mktemp -d)
current="$tmp-current.yaml"   # the config of the lab that is up, for destroy
finished=0
cleanup() {
  status=$?
  if [ "$finished" != 1 ]; then
    say "demo failed (exit $status): destroying the lab"
    pulumi destroy --yes --skip-preview --stack "$STACK" --config-file "$current" >&2 \
      || $PY -m stacks.local down --name "$($PY -c "from stacks.local.stack import default_lab_name as d; print(d('$STACK'))")" >&2 || true
    say "partial results (every completed run is on disk): $RESULTS"
  fi
  rm -rf "$tmp" "$current"
  exit "$status"
}
trap cleanup EXIT

pulumi stack select --create "$STACK" >/dev/null

sessions=()
for profile in $PROFILES; do
  # A config file per profile, so the checked-in Pulumi.local.yaml is never rewritten.
  cfg="$tmp/Pulumi.$STACK.$profile.yaml"
  $PY - "Pulumi.$STACK.yaml" "$cfg" "$MODE" "$profile" <<'PYCODE'
import sys, yaml
src, dst, mode, profile = sys.argv[1:]
doc = yaml.safe_load(open(src))
doc["config"]["overlay-bench:mode"] = mode
doc["config"].pop("overlay-bench:linkRate", None)
if profile != "unshaped":
    doc["config"]["overlay-bench:linkRate"] = profile
yaml.safe_dump(doc, open(dst, "w"), sort_keys=False)
PYCODE
  cp "$cfg" "$current"
  say "pulumi up: 2-node $MODE lab, link $profile"
  pulumi up --yes --skip-preview --stack "$STACK" --config-file "$cfg"
  say "python -m bench: iperf 2, 10 streams, host vs overlay, 5 runs (link $profile)"
  # shellcheck disable=SC2086
  if ! $PY -m bench --stack "$STACK" --results "$RESULTS/$profile" $BENCH_ARGS; then
    session=$(ls -d "$RESULTS/$profile"/*/ | tail -n 1)
    say "some runs failed (their reasons are in $session/runs.jsonl): running them once more"
    $PY -m bench --resume "$session" --results "$RESULTS/$profile" --stack "$STACK"
  fi
  sessions+=("$(ls -d "$RESULTS/$profile"/*/ | tail -n 1)")
done

say "python -m analysis"
$PY -m analysis "${sessions[@]}" --out "$RESULTS/analysis"

say "pulumi destroy"
pulumi destroy --yes --skip-preview --stack "$STACK" --config-file "$current"
finished=1
say "done: table in $RESULTS/analysis/report.md, plots and report.html beside it"
