"""`python3 -m bench.tools apt-packages`: the Debian packages of the tools, for scripts/setup.sh.

Prints one `package:command` a line (the command tells whether the package is installed).
Runs with the system python3, before the project's virtualenv exists.
"""
from __future__ import annotations

import sys

from bench import tools


def main(argv: list[str]) -> int:
    if argv != ["apt-packages"]:
        print("usage: python3 -m bench.tools apt-packages", file=sys.stderr)
        return 2
    for package, command in tools.apt_packages().items():
        print(f"{package}:{command}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
