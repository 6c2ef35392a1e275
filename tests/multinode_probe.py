"""Run by test_faults.py in its own process: three Ray nodes on this machine
(``ray.cluster_utils.Cluster``) and a two-peer cohort placed with ``spread``. It trains while the
worker node hosting a peer is removed in epoch 2, and reports where the peers ran and the outcome."""

import json
import sys
from pathlib import Path

import ray
from fault_injection import KillAtStep, fault_test_config, outcome
from ray.cluster_utils import Cluster

from codistill.cohort.ray_cohort import RayCohort
from codistill.runner import prepare_run_dir, run_cohort

out = Path(sys.argv[1])
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                        "node_ip_address": "127.0.0.1"})
workers = [cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1") for _ in range(2)]
ray.init(address=cluster.address)
config = fault_test_config()
cohorts: list[RayCohort] = []
report = {}


def make(c):
    cohorts.append(RayCohort(c))
    return cohorts[-1]


def remove_a_peers_worker_node() -> None:
    nodes = [where["node"] for where in cohorts[-1].placement]
    report["nodes_before"] = nodes
    victim = next(w for w in workers if w.node_id in nodes)
    report["removed"] = victim.node_id
    cluster.remove_node(victim)


try:
    progress = KillAtStep(config, epoch=1, step=2, kill=remove_a_peers_worker_node)
    prepare_run_dir(out, config)
    results = run_cohort(config, out, make, progress=progress)
    report["faulty"] = outcome(results, out)
    report["nodes_after"] = [where["node"] for where in cohorts[-1].placement]
    report["recoveries"] = results["recoveries"]
    report["restarted"] = cohorts[-1].restarted  # the peer on the removed node only
    report["lost"] = [line for line in progress.stream.getvalue().splitlines() if "recovery" in line]
finally:
    ray.shutdown()
    cluster.shutdown()
print("REPORT " + json.dumps(report))
