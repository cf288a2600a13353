"""Training scripts (each one resumable and seeded; results go to the top-level results/)."""
