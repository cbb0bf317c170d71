#!/usr/bin/env bash
# Runs the whole test suite in .venv (after scripts/setup.sh). Extra arguments go to pytest.
set -uo pipefail
cd "$(dirname "$0")/.."
# Lint first: a style or import error fails in seconds, before the long real-lab tests.
.venv/bin/ruff check . || { echo "lint failed: fix the above (or see \`make lint\`)" >&2; exit 1; }
if [ -f scripts/pulumi-env.sh ]; then . scripts/pulumi-env.sh; fi
.venv/bin/python -m pytest "$@"
rc=$?
if [ "$rc" = 5 ]; then
  # pytest's "no tests collected": a suite that tests nothing must not pass.
  echo "pytest collected no tests: check the test paths and markers" >&2
  exit 1
fi
exit "$rc"
