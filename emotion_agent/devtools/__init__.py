"""Developer checks on the source tree (the import-layer check)."""
