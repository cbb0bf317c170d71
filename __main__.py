"""overlay-bench's Pulumi program: read the configuration, declare the configured
provider's cluster (stacks/<provider>), export the outputs document (stacks/outputs.py).

`pulumi stack output --json` then prints the document `python -m bench` reads.
"""
import importlib

import pulumi

from stacks import config, outputs

# provider -> module with `declare(cfg) -> outputs document`
PROVIDER_MODULES = {
    "local": "stacks.local.stack",
    "digitalocean": "stacks.digitalocean",
    "virtualbox": "stacks.virtualbox",
}

try:
    cfg = config.load()
    document = importlib.import_module(PROVIDER_MODULES[cfg.provider]).declare(cfg)
except config.StackError as exc:
    # RunError: Pulumi prints the one-line message without a traceback.
    raise pulumi.RunError(str(exc)) from None

for key in outputs.KEYS:
    pulumi.export(key, document[key])
