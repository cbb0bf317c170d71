# Sourced (never run) by users, the Makefile recipes, scripts and tests before any `pulumi`
# or `python -m ...` command: puts the project's virtualenv and Pulumi toolchain first on
# PATH and points Pulumi at a local file backend, so the local stack needs no Pulumi Cloud
# account and makes no network call.
#   . scripts/pulumi-env.sh            # from any directory
# Overrides: OVERLAY_BENCH_PULUMI_STATE (state directory, default <repo>/.pulumi-state),
# PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE (default: empty passphrase).

_ob_repo=$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)
: "${HOME:=$(getent passwd "$(id -u)" | cut -d: -f6)}"
# shellcheck source=../toolchain/versions.env
. "$_ob_repo/toolchain/versions.env"

# PATH: first where scripts/setup-pulumi.sh builds the toolchain when none is installed,
# then where the official installer puts it.
OVERLAY_BENCH_PULUMI_BIN="${XDG_CACHE_HOME:-$HOME/.cache}/overlay-bench/pulumi/v$PULUMI_VERSION/bin"
export OVERLAY_BENCH_PULUMI_BIN
for _ob_dir in "$HOME/.pulumi/bin" "$OVERLAY_BENCH_PULUMI_BIN"; do
  case ":$PATH:" in
    *":$_ob_dir:"*) ;;
    *) PATH="$_ob_dir:$PATH" ;;
  esac
done
export PATH

# State of every stack in a directory of the repo (git-ignored), not in Pulumi Cloud.
OVERLAY_BENCH_PULUMI_STATE="${OVERLAY_BENCH_PULUMI_STATE:-$_ob_repo/.pulumi-state}"
mkdir -p "$OVERLAY_BENCH_PULUMI_STATE"
export OVERLAY_BENCH_PULUMI_STATE
export PULUMI_BACKEND_URL="file://$OVERLAY_BENCH_PULUMI_STATE"

# Stack config secrets are encrypted with a passphrase; the local stack has no secret,
# so an empty one (which Pulumi accepts) spares the user a prompt. A stack that holds
# secrets (digitalocean) refuses an empty one: export your own before using it.
if [ -z "${PULUMI_CONFIG_PASSPHRASE+x}" ] && [ -z "${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ]; then
  export PULUMI_CONFIG_PASSPHRASE=""
fi

# No network: no "a newer version is available" check, and no plugin download when a
# program names a provider that is not installed (the DigitalOcean one, say).
export PULUMI_SKIP_UPDATE_CHECK=true
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true

# The project's virtualenv first, so that `python -m bench` and `python -m analysis` run with
# the packages of requirements.txt (scripts/setup.sh makes it).
case ":$PATH:" in
  *":$_ob_repo/.venv/bin:"*) ;;
  *) PATH="$_ob_repo/.venv/bin:$PATH" ;;
esac
export PATH

unset _ob_repo _ob_dir
