"""Benchmarks and result documents."""
