"""Training scripts: each learns a small weights file (tools/weights/) and writes its figures to results/."""
