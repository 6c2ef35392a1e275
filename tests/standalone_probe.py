"""Run by test_cohort_ray.py in a fresh process whose environment names no Ray settings: the
standalone path of ``jobs/online.py`` (import ``codistill.cohort``, ``start_ray``, place the
cohort, train one epoch), then report every address its Ray processes listen on."""

import json
import os
import sys

from ray_head import listening_addresses, process_tree

from codistill.cohort.ray_cohort import RayCohort
from codistill.cohort.ray_runtime import start_ray
from codistill.validation import load_config

config = load_config(sys.argv[1], ["data.train_fraction=0.1", "epochs=1"])
started = start_ray(config)
cohort = RayCohort(config)
try:
    steps = len(cohort.train_epoch(0))
    report = {"started": started, "steps": steps,
              "addresses": sorted(listening_addresses(process_tree({os.getpid()})))}
finally:
    cohort.shutdown()
    import ray

    ray.shutdown()
print("REPORT " + json.dumps(report))
