"""Run by test_data_parallel_ray.py in its own process: a cohort with R = [2, 1, 1] on two Ray nodes
of this machine (``ray.cluster_utils.Cluster``, two logical CPUs each, beside a head without CPUs),
trained uninterrupted, then again with one worker of the data-parallel peer SIGKILLed in epoch 2;
then, a third node added, again with the node of the data-parallel peer's workers removed in
epoch 2. Reports where every worker ran, its placement group and bundle, and the outcomes."""

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
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False,
                                                        "node_ip_address": "127.0.0.1"})
workers = [cluster.add_node(num_cpus=2, node_ip_address="127.0.0.1") for _ in range(2)]
ray.init(address=cluster.address)
peers = tiny_raw()["peers"] + [{"name": "small", "model": "mlp", "optimizer": {"lr": 0.1}}]
peers[0]["data_parallel"] = 2
config = tiny_config(peers=peers, epochs=2)
config = replace(config, runtime=replace(config.runtime, progress_every_seconds=0.0))
report: dict = {"nodes": [node.node_id for node in workers]}
cohorts: list = []


def kill_a_worker() -> None:
    cohort = cohorts[-1]
    report["before"] = [[worker["pid"] for worker in where.get("workers", [where])] for where in cohort.placement]
    report["workers"] = [[worker["node"] for worker in where.get("workers", [where])] for where in cohort.placement]
    report["bundles"] = [[ray.util.placement_group_table(group)["bundles_to_node_id"][index]
                          for group, index in bundles] for bundles in cohort.bundles]
    report["strategies"] = [ray.util.placement_group_table(bundles[0][0])["strategy"] for bundles in cohort.bundles]
    os.kill(cohort.placement[0]["workers"][1]["pid"], signal.SIGKILL)


def remove_the_workers_node() -> None:
    node = cohorts[-1].placement[0]["workers"][0]["node"]
    report["node_loss"] = {"removed": node, "before": [[w["node"] for w in where.get("workers", [where])]
                                                       for where in cohorts[-1].placement]}
    cluster.remove_node(next(worker for worker in workers if worker.node_id == node))


try:
    results = run(config, out / "uninterrupted")
    report["uninterrupted"] = outcome(results, out / "uninterrupted")
    report["val_accuracy"] = {peer["name"]: peer["last_val_accuracy"] for peer in results["peers"]}
    progress = KillAtStep(config, epoch=1, step=2, kill=kill_a_worker)
    results = run(config, out / "faulty", progress, cohorts)
    report["faulty"] = outcome(results, out / "faulty")
    report["recoveries"], report["restarted"] = results["recoveries"], cohorts[-1].restarted
    report["after"] = [[worker["pid"] for worker in where.get("workers", [where])] for where in cohorts[-1].placement]
    workers.append(cluster.add_node(num_cpus=2, node_ip_address="127.0.0.1"))
    cluster.wait_for_nodes()
    results = run(config, out / "node_lost", KillAtStep(config, epoch=1, step=2, kill=remove_the_workers_node), cohorts)
    report["node_loss"].update(outcome=outcome(results, out / "node_lost"), recoveries=results["recoveries"],
                               restarted=cohorts[-1].restarted,
                               after=[[w["node"] for w in where.get("workers", [where])]
                                      for where in cohorts[-1].placement])
finally:
    ray.shutdown()
    cluster.shutdown()
print("REPORT " + json.dumps(report))
