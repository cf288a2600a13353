"""Training scripts: each fits one model or parameter file from the shared data (train/dev only)."""
