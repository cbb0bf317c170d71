# The user's two commands: `make demo` (the whole job on the local stack) and `make test`.
# Both install whatever is missing first (scripts/setup.sh); both need root.
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: setup cloud-setup demo test lint clean-lab

setup:
	scripts/setup.sh

# Once, with internet, before the first `pulumi up --stack digitalocean`: the provider's
# plugin at the version requirements.txt pins (offline set-ups and CI never download it).
cloud-setup:
	scripts/setup-cloud.sh

demo: setup
	scripts/demo.sh

test: setup
	scripts/test.sh $(PYTEST_ARGS)

# ruff with pyproject.toml's rules; `make test` runs it first.
lint: setup
	.venv/bin/ruff check .

# Remove every lab this project made on this machine (after a crash, say).
clean-lab: setup
	$(PY) -m stacks.local down --all
