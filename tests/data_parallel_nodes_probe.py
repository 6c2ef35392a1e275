"""Run by test_data_parallel_ray.py in its own process: a cohort with R = [2, 1, 1] on two Ray nodes
of this machine (``ray.cluster_utils.Cluster``, two logical CPUs each), trained uninterrupted, then
again with one worker of the data-parallel peer SIGKILLed in epoch 2. Reports where every worker
ran, its placement group and bundle, and both outcomes."""

import json
import os
import signal
import sys
from dataclasses import replace
from pathlib import Path

import ray
from conftest import tiny_config, tiny_raw
from fault_injection import KillAtStep, outcome, run
from ray.cluster_utils import Cluster

out = Path(sys.argv[1])
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False,
                                                        "node_ip_address": "127.0.0.1"})
cluster.add_node(num_cpus=2, node_ip_address="127.0.0.1")
ray.init(address=cluster.address)
peers = tiny_raw()["peers"] + [{"name": "small", "model": "mlp", "optimizer": {"lr": 0.1}}]
peers[0]["data_parallel"] = 2
config = tiny_config(peers=peers, epochs=2)
config = replace(config, runtime=replace(config.runtime, progress_every_seconds=0.0))
report: dict = {"nodes": [node["NodeID"] for node in ray.nodes()]}
cohorts: list = []


def kill_a_worker() -> None:
    cohort = cohorts[-1]
    report["before"] = [[worker["pid"] for worker in where.get("workers", [where])] for where in cohort.placement]
    report["workers"] = [[worker["node"] for worker in where.get("workers", [where])] for where in cohort.placement]
    report["bundles"] = [[ray.util.placement_group_table(group)["bundles_to_node_id"][index]
                          for group, index in bundles] for bundles in cohort.bundles]
    report["strategies"] = [ray.util.placement_group_table(bundles[0][0])["strategy"] for bundles in cohort.bundles]
    os.kill(cohort.placement[0]["workers"][1]["pid"], signal.SIGKILL)


try:
    results = run(config, out / "uninterrupted")
    report["uninterrupted"] = outcome(results, out / "uninterrupted")
    report["val_accuracy"] = {peer["name"]: peer["last_val_accuracy"] for peer in results["peers"]}
    progress = KillAtStep(config, epoch=1, step=2, kill=kill_a_worker)
    results = run(config, out / "faulty", progress, cohorts)
    report["faulty"] = outcome(results, out / "faulty")
    report["recoveries"], report["restarted"] = results["recoveries"], cohorts[-1].restarted
    report["after"] = [[worker["pid"] for worker in where.get("workers", [where])] for where in cohorts[-1].placement]
finally:
    ray.shutdown()
    cluster.shutdown()
print("REPORT " + json.dumps(report))
