#!/usr/bin/env bash
# Runs the whole test suite in .venv (after scripts/setup.sh). Extra arguments go to pytest.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -f scripts/pulumi-env.sh ]; then . scripts/pulumi-env.sh; fi
.venv/bin/python -m pytest "$@"
rc=$?
if [ "$rc" = 5 ]; then
  # pytest's "no tests collected": a suite that tests nothing must not pass.
  echo "pytest collected no tests: check the test paths and markers" >&2
  exit 1
fi
exit "$rc"
