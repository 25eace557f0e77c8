"""Subcommands of the ``tensorpoly-tn`` command line, one module each with ``register(subparsers)``."""

__all__: list[str] = []
