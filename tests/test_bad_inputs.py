"""The front door: bad inputs of every kind, each refused with exit status 2, exactly one line on
stderr naming the field, nothing written, and Ray never started.

Cases run the jobs in-process (``online.main`` / ``offline.main``); each builds its inputs under
``tmp_path`` (also the working directory), and the whole tree is compared before and after.
"""

from __future__ import annotations

import hashlib
import pickle
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from conftest import tiny_raw
from front_door_setups import (
    config,
    cut,
    damage_every_checkpoint,
    data_root,
    existing_run,
    fashion_files,
    fashion_not_installed,
    image_tree,
    imagefolder_partition,
    malicious,
    method,
    more_workers_than_gpus,
    narrow_indistill_teacher,
    offline_partition,
    offline_replicas,
    oracle_labels,
    partition,
    peer0,
    policy,
    replicas,
    resume,
    run_dir_at,
    saved_mlp,
    sets,
    teacher,
)

from codistill import safe_io
from codistill.commands import online
from codistill.validation import parse_config


@pytest.fixture(autouse=True)
def front_door_only(monkeypatch, tmp_path):
    """No Ray, no CUDA, and the working directory inside tmp_path (so a stray write is seen)."""
    monkeypatch.setattr(online, "start_ray", lambda config: pytest.fail("Ray started"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A tiny run stopped after one of its two epochs: checkpoints to resume from."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("run")
    (root / "c.yaml").write_text(yaml.safe_dump(tiny_raw()))
    assert online.main(["--config", str(root / "c.yaml"), "--run-dir", str(root / "run"), "--backend", "sequential",
                        "--stop-after-epochs", "1"]) == 0
    return root / "run"


CASES = [
    # the config file
    pytest.param(config(text="peers: [unclosed\n"), "--config", id="malformed-yaml"),
    pytest.param(config(text="- a\n- b\n"), "--config", id="config-not-a-mapping"),
    pytest.param(config(text=yaml.safe_dump(tiny_raw()) + "seed: 3\n"), "--config", id="config-key-twice"),
    pytest.param(lambda tmp: (online.main, ["--config", str(tmp / "none.yaml"), "--run-dir", str(tmp / "r")]),
                 "--config", id="config-missing"),
    pytest.param(config({"colour": "blue"}), "colour", id="unknown-field"),
    pytest.param(config({"peers": [{"model": "mlp"}, {"model": "resnet7"}]}), "peers[1].model", id="unknown-model"),
    pytest.param(config({"peers": [{"model": "mlp"}]}), "peers", id="one-peer"),
    pytest.param(config({"seed": None}), "seed", id="null-seed"),
    pytest.param(config({"epochs": 0}), "epochs", id="zero-epochs"),
    pytest.param(config(peer0(optimizer={"momentum": -0.9})), "peers[0].optimizer.momentum", id="negative-momentum"),
    pytest.param(config(peer0(optimizer={"weight_decay": -1e-4})), "peers[0].optimizer.weight_decay", id="negative-wd"),
    pytest.param(config(text=yaml.safe_dump(tiny_raw()).replace("lr: 0.05", "lr: .nan", 1)),
                 "peers[0].optimizer.lr", id="nan-lr"),
    pytest.param(config(peer0(optimizer={"lr": float("inf")})), "peers[0].optimizer.lr", id="inf-lr"),
    pytest.param(config(peer0(optimizer={"lr": 0.0})), "peers[0].optimizer.lr", id="zero-lr"),
    pytest.param(config(peer0(resources={"cpus": float("nan")})), "peers[0].resources.cpus", id="nan-cpus"),
    pytest.param(config(peer0(resources={"gpus": -1})), "peers[0].resources.gpus", id="negative-gpus"),
    pytest.param(config(peer0(lr_schedule={"name": "multistep", "gamma": 0})), "peers[0].lr_schedule.gamma",
                 id="zero-gamma"),
    pytest.param(config(peer0(lr_schedule={"name": "multistep", "milestones": ["ten"]})),
                 "peers[0].lr_schedule.milestones", id="bad-milestones"),
    pytest.param(config(peer0(sparsity={"target": 0.5, "every_steps": 0})), "peers[0].sparsity.every_steps",
                 id="zero-prune-interval"),
    pytest.param(config(peer0(sparsity={"target": 0.5, "start_epoch": 2, "end_epoch": 1})),
                 "peers[0].sparsity.end_epoch", id="pruning-ends-before-start"),
    pytest.param(config({"data": {"dataset": "digits", "train_fraction": float("nan")}}), "data.train_fraction",
                 id="nan-fraction"),
    pytest.param(config({"data": {"dataset": "digits", "label_noise": float("inf")}}), "data.label_noise",
                 id="inf-noise"),
    pytest.param(config({"data": {"dataset": "digits", "image_size": 16}}), "data.image_size", id="digits-resized"),
    pytest.param(config(method("kd", temperature=float("nan"))), "distillation.methods[0].params.temperature",
                 id="nan-temperature"),
    pytest.param(config(method("kd", temperature=float("inf"))), "distillation.methods[0].params.temperature",
                 id="inf-temperature"),
    pytest.param(config(method("kd", tau=2)), "distillation.methods[0].params.tau", id="unknown-method-param"),
    pytest.param(config(method("dkd", beta=-8)), "distillation.methods[0].params.beta", id="negative-dkd-beta"),
    pytest.param(config(method("sfr", sinkhorn_iterations=0)), "distillation.methods[0].params.sinkhorn_iterations",
                 id="zero-sinkhorn"),
    pytest.param(config(method("indistill", curriculum_epochs=[5, 2])),
                 "distillation.methods[0].params.curriculum_epochs", id="unsorted-curriculum"),
    pytest.param(config({"distillation": {"weight": float("nan")}}), "distillation.weight", id="nan-weight"),
    pytest.param(config({"distillation": {"weight": {"kind": "ramp", "value": float("inf"), "ramp_epochs": 3}}}),
                 "distillation.weight.value", id="inf-ramp"),
    pytest.param(config({"distillation": {"methods": [{"name": "kd", "weight": float("nan")}]}}),
                 "distillation.methods[0].weight", id="nan-method-weight"),
    pytest.param(config({"distillation": {"policy": {"name": "uniform", "params": {"temperature": 2}}}}),
                 "distillation.policy.params.temperature", id="uniform-policy-param"),
    pytest.param(config({"distillation": {"policy": {"name": "policies.confidence:ConfidenceAwarePolicy",
                                                     "params": {"beta": 1}}}}),
                 "distillation.policy.params.beta", id="confidence-policy-param"),
    pytest.param(policy("policies.constant:ConstantPolicy"), "distillation.policy.params.weights",
                 id="constant-policy-without-weights"),
    pytest.param(policy("policies.constant:ConstantPolicy", weights={"nobody": 1.0}),
                 "distillation.policy.params.weights.nobody", id="constant-policy-unknown-teacher"),
    pytest.param(policy("policies.constant:ConstantPolicy", weights={"cnn": -1.0}),
                 "distillation.policy.params.weights.cnn", id="constant-policy-negative-weight"),
    pytest.param(policy("policies.constant:ConstantPolicy", weights={"cnn": 0.0}),
                 "distillation.policy.params.weights", id="constant-policy-all-zero"),
    pytest.param(policy("policies.constant:ConstantPolicy", weights={"cnn": 1.0}, default=-0.5),
                 "distillation.policy.params.default", id="constant-policy-negative-default"),
    pytest.param(policy("policies.oracle:LabelOraclePolicy", labels="missing.pt"), "distillation.policy.params.labels",
                 id="oracle-labels-missing"),
    pytest.param(oracle_labels(torch.rand(10)), "distillation.policy.params.labels", id="oracle-labels-not-integers"),
    pytest.param(policy("policies.learned:LearnedPolicy", 0.1, estimator="sgd"), "distillation.policy.params.estimator",
                 id="learned-unknown-estimator"),
    pytest.param(policy("policies.learned:LearnedPolicy", 0.1, probe_loss="mse"),
                 "distillation.policy.params.probe_loss", id="learned-unknown-probe-loss"),
    pytest.param(policy("policies.learned:LearnedPolicy", 0.1, credit_scope="body"),
                 "distillation.policy.params.credit_scope", id="learned-unknown-credit-scope"),
    pytest.param(policy("policies.learned:LearnedPolicy", 0.1, uniform_prior=-1.0),
                 "distillation.policy.params.uniform_prior", id="learned-negative-uniform-prior"),
    pytest.param(policy("policies.learned:LearnedPolicy", 0.1, baseline_decay="slow"),
                 "distillation.policy.params.baseline_decay", id="learned-baseline-decay-not-a-number"),
    pytest.param(policy("policies.learned:LearnedPolicy", 0.1, learn="yes"),
                 "distillation.policy.params.learn", id="learned-learn-not-a-boolean"),
    pytest.param(sets("data.probe_source=clean"), "data.probe_source", id="unknown-probe-source"),
    pytest.param(sets("data.probe_source=held_out"), "data.probe_source", id="held-out-probe-without-a-fraction"),
    pytest.param(sets("data.probe_source=held_out", "data.probe_fraction=0.5", "data.test_fraction=0.95"),
                 "data.probe_source", id="held-out-probe-leaves-too-little-validation"),
    pytest.param(data_root("fashion_mnist", fashion_files(), val_fraction=0.5, probe_fraction=0.2,
                           probe_source="held_out"), "data.probe_source", id="fashion-held-out-probe-too-large"),
    pytest.param(config({"data": {**tiny_raw()["data"], "classes": []}}), "data.classes", id="no-classes"),
    pytest.param(config({"data": {**tiny_raw()["data"], "classes": [1, 1]}}), "data.classes", id="repeated-class"),
    pytest.param(config({"data": {**tiny_raw()["data"], "classes": [0, 10]}}), "data.classes", id="class-out-of-range"),
    pytest.param(config({"data": {**tiny_raw()["data"], "classes": "0-4"}}), "data.classes", id="classes-not-a-list"),
    pytest.param(config({"runtime": {"log_every_steps": 0}}), "runtime.log_every_steps", id="zero-log-interval"),
    # codistillation (replicas)
    pytest.param(config(replicas(teacher_source="gossip")), "distillation.teacher_source", id="unknown-teacher-source"),
    pytest.param(config(replicas(refresh_every_steps=0)), "distillation.refresh_every_steps", id="zero-refresh"),
    pytest.param(config(replicas(refresh_every_steps=2.5)), "distillation.refresh_every_steps",
                 id="fractional-refresh"),
    pytest.param(config(replicas(refresh_at_epoch_start="sometimes")), "distillation.refresh_at_epoch_start",
                 id="refresh-at-epoch-start-not-a-bool"),
    pytest.param(config(replicas(burn_in_epochs=2)), "distillation.burn_in_epochs", id="burn-in-beyond-the-run"),
    pytest.param(config(replicas(burn_in_epochs=-1)), "distillation.burn_in_epochs", id="negative-burn-in"),
    pytest.param(config({**replicas(), "runtime": {"exchange": "collective"}}), "runtime.exchange",
                 id="replicas-with-collective-exchange"),
    pytest.param(config({"runtime": {"exchange": "nowhere.module:Exchange"}}), "runtime.exchange",
                 id="user-exchange-missing"),
    pytest.param(config({"runtime": {"exchange": "codistill.config:RunConfig"}}), "runtime.exchange",
                 id="user-exchange-not-an-exchange"),
    pytest.param(config({"data": {**tiny_raw()["data"], "shared_batches": False}}), "data.shared_batches",
                 id="own-batches-with-live-teachers"),
    pytest.param(offline_replicas, "distillation.teacher_source", id="replicas-offline"),
    # peers on shards of the training split (data.partition)
    pytest.param(config(partition(alpha=0)), "data.partition.alpha", id="partition-zero-alpha"),
    pytest.param(config(partition(alpha=-1.0)), "data.partition.alpha", id="partition-negative-alpha"),
    pytest.param(config(partition()), "data.partition.alpha", id="partition-dirichlet-without-alpha"),
    pytest.param(config(partition("iid", alpha=0.5)), "data.partition.alpha", id="partition-alpha-without-dirichlet"),
    pytest.param(config(partition(None, alpha=0.5)), "data.partition.alpha", id="partition-alpha-without-kind"),
    pytest.param(config(partition("label_skew")), "data.partition.kind", id="partition-unknown-kind"),
    pytest.param(config(partition("classes", classes=[[0, 1, 2, 3, 4], [5, 6, 7, 8, 10]])),
                 "data.partition.classes", id="partition-unknown-class"),
    pytest.param(config(partition("classes", classes=[[0, 1, 2, 3, 4], [5, 6, 7, 8]])), "data.partition.classes",
                 id="partition-class-to-no-peer"),
    pytest.param(config(partition("classes", classes=[list(range(10))])), "data.partition.classes",
                 id="partition-one-list-for-two-peers"),
    pytest.param(config(partition("classes")), "data.partition.classes", id="partition-classes-without-lists"),
    pytest.param(config(partition("classes", classes=[[0, 0], [1]])), "data.partition.classes",
                 id="partition-class-listed-twice"),
    pytest.param(config(partition("iid", classes=[[0], [1]])), "data.partition.classes",
                 id="partition-lists-without-classes"),
    pytest.param(config(partition("iid", peers=6)), "data.partition", id="partition-shard-under-a-batch"),
    pytest.param(config(partition(alpha=0.01, peers=4)), "data.partition", id="partition-dirichlet-small-shard"),
    pytest.param(config(partition("iid", distillation={"teacher_source": "live"})), "distillation.teacher_source",
                 id="partition-with-a-live-exchange"),
    pytest.param(config({**partition("iid"), "data": {**partition("iid")["data"], "shared_batches": True}}),
                 "data.shared_batches", id="partition-with-shared-batches"),
    pytest.param(config({**partition("iid"), "data": {**partition("iid")["data"], "classes": [0, 1]}}),
                 "data.classes", id="partition-with-data-classes"),
    pytest.param(offline_partition, "data.partition", id="partition-offline"),
    pytest.param(config({**partition("iid"), "data": {**partition("iid")["data"], "shared_fraction": 1.0}}),
                 "data.shared_fraction", id="shared-fraction-one"),
    pytest.param(config({**partition("iid"), "data": {**partition("iid")["data"], "shared_fraction": -0.1}}),
                 "data.shared_fraction", id="shared-fraction-negative"),
    pytest.param(config({"data": {**tiny_raw()["data"], "shared_fraction": 0.3}}), "data.shared_fraction",
                 id="shared-fraction-without-partition"),
    pytest.param(config({**partition("iid"), "data": {**partition("iid")["data"], "shared_fraction": 0.1}}),
                 "data.shared_fraction", id="shared-slice-under-a-batch"),
    pytest.param(config({**partition("iid"), "data": {**partition("iid")["data"], "shared_fraction": 0.3},
                         "peers": [{"name": "p0", "model": "plain_network:PlainMLP", "data_parallel": 2},
                                   {"name": "p1", "model": "plain_network:PlainMLP"}]}),
                 "peers[0].data_parallel", id="shared-slice-with-data-parallel-workers"),
    pytest.param(imagefolder_partition, "data.partition", id="imagefolder-with-partition"),
    # --set
    pytest.param(sets("seed.x=1"), "seed.x", id="set-through-scalar"),
    pytest.param(sets("peers.5.model=cnn"), "peers.5", id="set-index-past-end"),
    pytest.param(sets("peers.x.model=cnn"), "peers.x", id="set-non-numeric-index"),
    pytest.param(sets("seed="), "seed", id="set-empty-value"),
    pytest.param(sets("seed"), "--set", id="set-without-equals"),
    pytest.param(sets("=3"), "--set", id="set-empty-key"),
    pytest.param(sets("peers.0.optimizer.lr=[1,"), "peers.0.optimizer.lr", id="set-malformed-yaml"),
    pytest.param(sets("distillation.weight=.inf"), "distillation.weight", id="set-inf-weight"),
    # the command line
    pytest.param(config(None, "--stop-after-epochs", "0"), "--stop-after-epochs", id="stop-after-zero"),
    pytest.param(config(None, "--stop-after-epochs", "two"), "command line", id="stop-after-text"),
    pytest.param(config(None, "--backend", "threads"), "command line", id="unknown-backend"),
    pytest.param(lambda tmp: (online.main, []), "--config", id="no-config"),
    # devices (this machine has no CUDA, by the fixture)
    pytest.param(config({"runtime": {"device": "cuda"}}), "runtime.device", id="cuda-without-gpu"),
    pytest.param(config({"peers": [{"model": "mlp"}, {"model": "cnn", "resources": {"gpus": 1}}]}),
                 "peers[1].resources.gpus", id="gpus-without-cuda"),
    pytest.param(config({"peers": [{"model": "mlp", "resources": {"gpus": 0.5}}, {"model": "cnn"}]},
                        "--backend", "sequential"), "peers[0].resources.gpus", id="gpus-without-cuda-sequential"),
    # data-parallel peers
    pytest.param(config(peer0(data_parallel=0)), "peers[0].data_parallel", id="data-parallel-zero"),
    pytest.param(config(peer0(data_parallel=-2)), "peers[0].data_parallel", id="data-parallel-negative"),
    pytest.param(config(peer0(data_parallel=1.5)), "peers[0].data_parallel", id="data-parallel-fraction"),
    pytest.param(config(peer0(data_parallel="two")), "peers[0].data_parallel", id="data-parallel-text"),
    pytest.param(config(peer0(data_parallel=65)), "peers[0].data_parallel", id="data-parallel-above-batch"),
    pytest.param(config(peer0(data_parallel=2, resources={"gpus": 0.5})), "peers[0].resources.gpus",
                 id="data-parallel-fractional-gpu"),
    pytest.param(config(peer0(data_parallel=2), "--backend", "sequential"), "peers[0].data_parallel",
                 id="data-parallel-sequential"),
    pytest.param(config({"peers": [{"model": "mlp", "data_parallel": 2}]}, "--independent", job="offline"),
                 "peers[0].data_parallel", id="data-parallel-offline"),
    pytest.param(more_workers_than_gpus, "peers[1].data_parallel", id="data-parallel-more-workers-than-gpus"),
    pytest.param(config({"runtime": {"sync_batchnorm": "yes"}}), "runtime.sync_batchnorm",
                 id="sync-batchnorm-not-a-bool"),
    # data roots
    pytest.param(data_root("cifar10", lambda root: None), "data.root", id="cifar-root-empty"),
    pytest.param(data_root("cifar100", lambda root: (root / "cifar-100-python").mkdir()), "data.root",
                 id="cifar-root-without-batches"),
    pytest.param(data_root("imagefolder", lambda root: None), "data.root", id="imagefolder-root-empty"),
    pytest.param(data_root("imagefolder", image_tree(["cat", "dog"], ["cat", "dog"], with_images=False)), "data.root",
                 id="imagefolder-without-images"),
    pytest.param(data_root("imagefolder", image_tree(["cat", "dog"], ["cat"])), "data.root",
                 id="imagefolder-classes-differ"),
    pytest.param(data_root("imagefolder", image_tree(["cat", "dog"], ["cat", "dog"]), classes=[0]), "data.classes",
                 id="imagefolder-with-classes"),
    pytest.param(config({"data": {"dataset": "imagefolder", "root": "/no/such/tree"}}), "data.root",
                 id="imagefolder-root-missing"),
    pytest.param(data_root("fashion_mnist", lambda root: None), "data.root", id="fashion-root-empty"),
    pytest.param(data_root("fashion_mnist", fashion_files(cut("t10k-labels-idx1-ubyte.gz", -12))), "data.root",
                 id="fashion-truncated-gzip"),
    pytest.param(data_root("fashion_mnist", fashion_files(lambda root: (root / "train-images-idx3-ubyte.gz").rename(
        root / "train-labels-idx1-ubyte.gz"))), "data.root", id="fashion-wrong-magic"),
    pytest.param(fashion_not_installed(), "data.root", id="fashion-package-not-installed"),
    pytest.param(fashion_not_installed(download=True), "data.root", id="fashion-download-without-root"),
    pytest.param(fashion_not_installed(download=True, root="data"), "data.download", id="fashion-download-offline"),
    pytest.param(config({"data": {"dataset": "fashion_mnist", "download": "yes"}}), "data.download",
                 id="download-not-a-bool"),
    pytest.param(config({"data": {"dataset": "digits", "download": True}}), "data.download", id="digits-download"),
    pytest.param(config({"data": {"dataset": "digits", "val_fraction": 0.2}}), "data.val_fraction",
                 id="digits-val-fraction"),
    pytest.param(config({"data": {"dataset": "fashion_mnist", "val_fraction": 0.0}}), "data.val_fraction",
                 id="zero-val-fraction"),
    pytest.param(config({"data": {"dataset": "fashion_mnist", "val_fraction": "many"}}), "data.val_fraction",
                 id="val-fraction-not-a-number"),
    pytest.param(config({"data": {"dataset": "cifar10", "test_fraction": 0.5}}), "data.test_fraction",
                 id="cifar-test-fraction"),
    # run directories
    pytest.param(existing_run(lambda run: (run / "config.yaml").write_text("name: old\n")), "--run-dir",
                 id="run-dir-holds-a-run"),
    pytest.param(run_dir_at(lambda tmp: (tmp / "file").write_text("x") and tmp / "file" / "run"), "--run-dir",
                 id="run-dir-under-a-file"),
    pytest.param(run_dir_at(lambda tmp: Path("/proc/codistill-run")), "--run-dir", id="run-dir-not-writable"),
    # resuming
    pytest.param(lambda tmp: (online.main, ["--resume", str(tmp)]), "--resume", id="resume-not-a-run"),
    pytest.param(resume("--config", "x.yaml"), "--config", id="resume-with-config"),
    pytest.param(resume("--independent"), "--independent", id="resume-independent"),
    pytest.param(resume("--set", "seed=5"), "seed", id="resume-changes-seed"),
    pytest.param(resume("--set", "peers.0.optimizer.lr=0.1"), "peers[0].optimizer.lr", id="resume-changes-lr"),
    pytest.param(resume(damage=damage_every_checkpoint), "--resume", id="resume-every-checkpoint-corrupt"),
    pytest.param(resume(damage=lambda run: shutil.rmtree(run / "checkpoints")), "--resume",
                 id="resume-without-checkpoints"),
    # offline teachers
    pytest.param(teacher(malicious), "teachers[0].checkpoint", id="teacher-malicious-pickle"),
    pytest.param(teacher(lambda path: path.write_bytes(b"\x80\x04not a torch file")), "teachers[0].checkpoint",
                 id="teacher-garbage"),
    pytest.param(teacher(lambda path: torch.save([1, 2], path)), "teachers[0].checkpoint", id="teacher-not-a-network"),
    pytest.param(teacher(saved_mlp), "teachers[0].checkpoint", id="teacher-model-mismatch"),
    pytest.param(narrow_indistill_teacher, "distillation.methods[0]", id="indistill-narrow-teacher"),
    pytest.param(teacher(lambda path: path.write_bytes(safe_io.dumps({
        "model": "resnet8x4", "state": {}, "num_classes": 100, "in_channels": 3, "image_size": 32}))),
        "teachers[0].checkpoint", id="teacher-for-other-classes"),
]


def tree(root: Path) -> dict[str, str]:
    return {str(path.relative_to(root)): "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*"))}


@pytest.mark.parametrize("setup, field", CASES)
def test_bad_input_is_refused_at_the_front_door(setup, field, tmp_path, capsys, request):
    if getattr(setup, "needs_run", False):
        main, argv = setup(tmp_path, request.getfixturevalue("finished_run"))
    elif getattr(setup, "needs_monkeypatch", False):
        main, argv = setup(tmp_path, request.getfixturevalue("monkeypatch"))
    else:
        main, argv = setup(tmp_path)
    capsys.readouterr()
    before = tree(tmp_path)
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("codistill: config error in ") and f"'{field}'" in err, err
    assert out == ""
    assert tree(tmp_path) == before
    assert not Path("/proc/codistill-run").exists()


def test_the_table_is_large_enough():
    assert len(CASES) >= 40


def test_a_malicious_teacher_file_never_runs(tmp_path, capsys):
    main, argv = teacher(malicious)(tmp_path)
    with pytest.raises(pickle.UnpicklingError):  # it is what it claims: weights_only refuses it
        torch.load(tmp_path / "teacher.pt", weights_only=True)
    assert main(argv) == 2
    assert "refused" in capsys.readouterr().err
    assert not (tmp_path / "pwned").exists()
    torch.load(tmp_path / "teacher.pt", weights_only=False)  # the control: full unpickling runs the payload
    assert (tmp_path / "pwned").exists()


def test_a_config_error_raised_in_an_actor_reaches_the_driver_intact(ray_runtime):
    @ray_runtime.remote
    def refuse():
        from codistill.errors import ConfigError

        raise ConfigError("data.root", "raised on a worker")

    with pytest.raises(Exception) as error:
        ray_runtime.get(refuse.remote())
    from codistill.errors import ConfigError

    assert isinstance(error.value, ConfigError) and error.value.field == "data.root"


def test_gpus_pass_the_device_check_where_cuda_is_available():
    from codistill.config import check_devices

    config = parse_config(tiny_raw(peers=[{"model": "mlp", "resources": {"gpus": 0.5}}, {"model": "cnn"}],
                                   runtime={"device": "cuda"}))
    check_devices(config, cuda_available=True)
    with pytest.raises(Exception, match="no CUDA device"):
        check_devices(config, cuda_available=False)


def test_a_split_leaving_one_example_over_trains_on_every_batch(tmp_path):
    """337 training examples in batches of 16 leave one over; it joins the last batch instead of
    reaching BatchNorm alone (which raised inside the run)."""
    path = tmp_path / "c.yaml"
    raw = tiny_raw()
    raw["data"]["batch_size"] = 16
    path.write_text(yaml.safe_dump(raw))
    assert online.main(["--config", str(path), "--run-dir", str(tmp_path / "run"), "--backend", "sequential",
                        "--stop-after-epochs", "1"]) == 0
