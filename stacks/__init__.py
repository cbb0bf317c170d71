"""Stacks: one module per provider, each with `declare(cfg)`; plus the shared outputs contract."""
