"""Benchmarks: scripts that measure speed and accuracy and write JSON to results/."""
