"""What ``jobs/benchmark_*.py`` measure: :mod:`.cohort` (Ray cohorts against their peers alone, per
exchange), :mod:`.replicas` (codistillation's replicas against live teachers, on one node and
two, with a real cluster's estimate), :mod:`.policy` (the learned teacher policy's overhead per
epoch) and :mod:`.gpu` (a cohort on a GPU without Ray), with :mod:`.gpu_report` (the GPU check's
report)."""
