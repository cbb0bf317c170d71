"""The local lab: network-namespace nodes with their own dockerd, on one Linux machine.

Python API in `stacks.local.lab` (up, down, status_of, residue, namespace, list_labs);
command line in `python -m stacks.local`; the lab's limits in `stacks.local.spec`; the `local`
provider (configuration keys and Pulumi resources) in `stacks.local.stack`.
"""
