"""Benchmarks run by ``tensorpoly-tn bench NAME``; each module has ``add_arguments`` and ``run``."""

__all__: list[str] = []
