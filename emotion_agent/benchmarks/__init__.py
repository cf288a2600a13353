"""Benchmarks and service load, fault, soak and hostile-input runs: each prints figures and writes JSON to results/."""
