#!/usr/bin/env bash
# The cloud stacks' extra set-up, once, on a machine with internet: the Pulumi resource
# plugin of each cloud provider at the version requirements.txt pins for its SDK
# (stacks/plugins.py). scripts/pulumi-env.sh keeps automatic plugin downloads off, so that
# the local stack and CI never reach out; this is the one explicit download. `make setup`
# (the venv, the Pulumi CLI) comes first; no root is needed.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  echo "error: no .venv here: run \`make setup\` first (it makes the venv and the Pulumi CLI)" >&2
  exit 1
fi
# shellcheck source=pulumi-env.sh
. scripts/pulumi-env.sh
exec .venv/bin/python -m stacks.plugins --install
