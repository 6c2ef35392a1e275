"""Run by test_job_submit.py in its own process: a two-node Ray cluster on this machine
(``ray.cluster_utils.Cluster``), a cohort placed with ``spread``, one epoch, then a node failure."""

import json
import sys

import ray
from ray.cluster_utils import Cluster

from codistill.cohort import RayCohort
from conftest import tiny_config

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                        "node_ip_address": "127.0.0.1"})
worker = cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
ray.init(address=cluster.address)
report = {}
try:
    cohort = RayCohort(tiny_config(runtime={"placement": "spread"}))
    report["nodes"] = [p["node"] for p in cohort.placement]
    metrics = cohort.train_epoch(0)
    report["steps"] = len(metrics)
    cluster.remove_node(worker)
    try:
        cohort.train_epoch(1)
        report["after_failure"] = "trained"
    except ray.exceptions.RayError as error:
        report["after_failure"] = type(error).__name__
finally:
    ray.shutdown()
    cluster.shutdown()
print("REPORT " + json.dumps(report))
sys.exit(0)
