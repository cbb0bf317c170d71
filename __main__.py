"""overlay-bench's Pulumi program: read the configuration, declare the configured
provider's cluster (the registry in stacks/providers.py), export the outputs document
(stacks/outputs.py) key by key.

`pulumi stack output --json` then prints the document `python -m bench` reads.
"""
import pulumi

from stacks import config, outputs, providers

try:
    cfg = config.load()
    document = providers.get(cfg.common.provider).declare(cfg.common, cfg.settings)
except config.StackError as exc:
    # RunError: Pulumi prints the one-line message without a traceback.
    raise pulumi.RunError(str(exc)) from None

for key in outputs.KEYS:
    pulumi.export(key, document.apply(lambda doc, key=key: doc[key]))
