"""Evaluation: MELD loader, metrics, runners, reports, benchmarks."""
