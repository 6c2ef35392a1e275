"""Run by test_sweep_resume.py in its own process: a sweep on a ``ray.cluster_utils.Cluster`` whose
head has no CPUs, so its one trial (driver and peer actors) runs on worker node A. Once the trial
has checkpointed twice, node B joins and A is removed; Tune retries the trial from its checkpoint on B
(``--max-failures``). Reports what the sweep wrote."""

import json
import sys
import threading
import time
from pathlib import Path

import ray
from ray.cluster_utils import Cluster
from test_sweep import sweep_args
from test_sweep_resume import reported_epochs, trials_on_disk

from codistill.commands import sweep

out = Path(sys.argv[1])
directory = out / "sweeps" / "s"
EPOCHS = 10  # a trial long enough to outlast node B's start
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False,
                                                        "node_ip_address": "127.0.0.1"})
node_a = cluster.add_node(num_cpus=3, node_ip_address="127.0.0.1")  # the trial's driver + two peers
ray.init(address=cluster.address)
report: dict = {"node_a": node_a.node_id}


def run_the_sweep() -> None:
    report["code"] = sweep.main(sweep_args(out, "--scheduler", "fifo", "--num-samples", "1", "--max-failures", "2",
                                           "--set", f"epochs={EPOCHS}", "--set", "data.train_fraction=1.0"))


sweeping = threading.Thread(target=run_the_sweep)  # nodes are added and removed from the main thread only
sweeping.start()
try:
    while not trials_on_disk(directory):
        time.sleep(0.1)
    report["node_b"] = cluster.add_node(num_cpus=3, node_ip_address="127.0.0.1").node_id
    while not any(trial.epochs >= 2 for trial in trials_on_disk(directory).values()):  # Tune has the first
        time.sleep(0.1)
    report["epochs_before"] = reported_epochs(directory)
    report["at_removal"] = {name: trial.epochs for name, trial in trials_on_disk(directory).items()}
    cluster.remove_node(node_a)
    report["removed"] = True
    sweeping.join()
    report["epochs_after"] = reported_epochs(directory)
    report["errors"] = [path.read_text() for path in directory.glob("train_cohort_*/error.txt")]
finally:
    ray.shutdown()
    cluster.shutdown()
print("REPORT " + json.dumps(report))
