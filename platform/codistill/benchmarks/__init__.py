"""What ``jobs/benchmark_*.py`` measure: :mod:`.cohort` (Ray cohorts against their peers alone, per
exchange) and :mod:`.policy` (the learned teacher policy's overhead per epoch)."""
