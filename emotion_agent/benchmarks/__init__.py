"""Benchmarks: scripts that print figures and write JSON to the top-level results/ folder."""
