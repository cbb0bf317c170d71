"""The stack a benchmark measures: the outputs file given, or a 2-node lab of its own."""
from __future__ import annotations

import contextlib
import json
from pathlib import Path

from tests import names


def outputs(stack: contextlib.ExitStack, given: str | None, tmp: Path, prefix: str, **spec) -> Path:
    """`given`, or the outputs of a new lab (name from `prefix`, a free subnet) that `stack`
    tears down and checks clean at its end. Needs root."""
    if given is not None:
        return Path(given)
    from common.status import Status
    from stacks.local import lab

    doc = stack.enter_context(lab.running(names.lab_name(prefix), subnet=names.subnet(), status=Status(quiet=True),
                                          **spec))
    path = tmp / "outputs.json"
    path.write_text(json.dumps(doc))
    return path


def load_image(outputs_file: Path) -> float:
    """Put the bench image on every node of the stack; the seconds it took."""
    import time

    from bench import engines, image

    start = time.monotonic()
    nodes = json.loads(outputs_file.read_text())["nodes"]
    clients = engines.connect_all(nodes)
    try:
        engines.ensure_image(clients, image.IMAGE_NAME, image.build_tarball())
    finally:
        for client in clients.values():
            client.close()
    return time.monotonic() - start
