"""Ray Tune sweeps (jobs/sweep.py, i.e. codistill.commands.sweep): ASHA, PBT with monotone mutation and
exploits, replay, resume, bad space files."""

import csv
import json
import random
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from conftest import tiny_raw

from codistill.checkpoint import load_latest_checkpoint
from codistill.cohort.sequential import SequentialCohort
from codistill.commands import sweep
from codistill.progress import Progress
from codistill.runner import run_cohort
from codistill.schedules import as_schedule
from codistill.tuning.layout import BEST_FILE, TRIALS_FILE
from codistill.tuning.monotone import constrain, loosened
from codistill.tuning.space import parse_dimension
from codistill.tuning.trainable import trial_run_dir
from codistill.validation import parse_config

SPACE = {"distillation.weight.value": {"uniform": [0.25, 2.0], "tightens": "up"},
         "distillation.methods.0.params.temperature": {"choice": [2.0, 3.0, 4.0], "tightens": "down"}}
RAMP = "distillation.weight={kind: ramp, value: 1.0, ramp_epochs: 2}"


def write_inputs(tmp_path, space=SPACE, **changes):
    config, space_file = tmp_path / "cohort.yaml", tmp_path / "space.yaml"
    config.write_text(yaml.safe_dump(tiny_raw(**changes)))
    space_file.write_text(yaml.safe_dump(space))
    return str(config), str(space_file)


def sweep_args(tmp_path, *extra, space=SPACE, **changes):
    config, space_file = write_inputs(tmp_path, space, **changes)
    return ["--config", config, "--space", space_file, "--storage", str(tmp_path / "sweeps"), "--name", "s",
            "--set", RAMP, *extra]


def trial_table(directory: Path) -> list[dict]:
    with (directory / TRIALS_FILE).open() as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("entry, message", [
    ({"distillation.weight.valu": {"uniform": [0.5, 1.0]}}, "valu"),
    ({"distilation.weight": {"choice": [0.5, 1.0]}}, "unknown field"),
    ({"distillation.weight.value": {"choice": []}}, "non-empty"),
    ({"distillation.weight.value": {"uniform": [2.0, 1.0]}}, "low 2.0 > high 1.0"),
    ({"distillation.weight.value": {"gaussian": [0.0, 1.0]}}, "unknown domain 'gaussian'"),
    ({"distillation.weight.value": {"loguniform": [0.0, 1.0]}}, "low > 0"),
    ({"peers.5.optimizer.lr": {"uniform": [0.01, 0.1]}}, "no entry 5 in a list of 2"),
    ({"peers.0.optimizer.lr": {"uniform": [0.0, 0.1]}}, "must be > 0"),
    ({"distillation.weight.value": {"uniform": [0.5, 1.0], "tightens": "sideways"}}, "tightens"),
])
def test_bad_space_file_is_refused_before_ray_naming_the_entry(tmp_path, capsys, entry, message):
    code = sweep.main(sweep_args(tmp_path, space=entry))
    err = capsys.readouterr().err.strip()
    key = next(iter(entry))
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"codistill: config error in 'space.yaml: {key}'") and message in err, err
    assert not (tmp_path / "sweeps").exists()


def test_the_shipped_space_file_fits_its_config():
    from codistill.tuning.space import load_space
    from codistill.validation import load_config

    root = Path(__file__).resolve().parent.parent / "jobs" / "configs"
    raw = json.loads(json.dumps(load_config(root / "digits_cohort.yaml").to_dict()))
    keys = [d.key for d in load_space(root / "digits_cohort_space.yaml", raw)]
    assert "distillation.weight.value" in keys and "distillation.methods.0.params.temperature" in keys


def test_population_schedulers_change_only_curriculum_fields(tmp_path, capsys):
    space = {**SPACE, "peers.0.optimizer.lr": {"uniform": [0.01, 0.1]}}
    assert sweep.main(sweep_args(tmp_path, "--scheduler", "pbt", space=space)) == 2
    assert "'space.yaml: peers.0.optimizer.lr'" in capsys.readouterr().err
    assert not (tmp_path / "sweeps").exists()


def test_monotone_mutation_never_loosens_a_constraint():
    from codistill.tuning.schedulers import ConstrainedPBT

    dimensions = [parse_dimension(key, spec, key) for key, spec in {
        **SPACE, "distillation.gate.on_start": {"uniform": [0.1, 1.0], "tightens": "up"},
        "distillation.weight.ramp_epochs": {"randint": [1, 10]}}.items()]
    scheduler = ConstrainedPBT(dimensions, perturbation_interval=1,
                               hyperparam_mutations={d.key: d.to_tune() for d in dimensions})
    rng = random.Random(0)
    random.seed(0)
    changed = 0
    for _ in range(2000):
        clone = {"distillation.weight.value": rng.uniform(0.25, 2.0),
                 "distillation.gate.on_start": rng.uniform(0.1, 1.0),
                 "distillation.methods.0.params.temperature": rng.choice([2.0, 3.0, 4.0]),
                 "distillation.weight.ramp_epochs": rng.randint(1, 10)}
        new, _ = scheduler._get_new_config(SimpleNamespace(config={}), SimpleNamespace(config=clone))
        assert loosened(clone, new, dimensions) == [], (clone, new)
        assert 0.25 <= new["distillation.weight.value"] <= 2.0 and 1 <= new["distillation.weight.ramp_epochs"] <= 10
        assert isinstance(new["distillation.weight.ramp_epochs"], int)
        changed += new != clone
    assert changed > 1000  # it still explores
    # constrain() alone: proposals below (above) the clone's value are lifted (lowered) to it
    up, down = dimensions[0], dimensions[1]
    assert constrain({up.key: 1.0}, {up.key: 0.8}, [up]) == {up.key: 1.0}
    assert constrain({down.key: 3.0}, {down.key: 4.0}, [down]) == {down.key: 3.0}


@pytest.mark.ray
def test_asha_sweep_finishes_and_writes_its_table(ray_runtime, tmp_path, capsys):
    code = sweep.main(sweep_args(tmp_path, "--scheduler", "asha", "--num-samples", "4", "--grace-epochs", "1",
                                 "--backend", "sequential"))
    out = capsys.readouterr().out
    directory = tmp_path / "sweeps" / "s"
    rows = trial_table(directory)
    assert code == 0 and len(rows) == 4
    assert {row["state"] for row in rows} <= {"complete", "stopped early"} and "complete" in {r["state"] for r in rows}
    for row in rows:
        assert 0.0 <= float(row["last mean_peer_val_accuracy"]) <= 1.0 and row["distillation.weight.value"]
        assert list((trial_run_dir(directory, row["trial"]) / "tensorboard" / "mlp").glob("events.out.tfevents.*"))
    assert "last mean_peer_val_accuracy" in out and "4 trials in" in out
    best = parse_config(yaml.safe_load((directory / BEST_FILE).read_text()))
    assert best.epochs == 2


def pbt_lineage(directory: Path) -> list[tuple[str, str, int, dict]]:
    """(target trial id, clone trial id, clone epoch, new config) of every exploit."""
    ids = {p.name.split("_")[-1]: p.name for p in (directory / "cohorts").iterdir()}  # "00001" -> "ab12_00001"
    exploits = []
    for line in (directory / "pbt_global.txt").read_text().splitlines():
        target, clone, _, clone_epoch, _, new_config = json.loads(line)
        exploits.append((ids[f"{int(target.split('_')[0]):05d}"], ids[f"{int(clone.split('_')[0]):05d}"],
                         clone_epoch, new_config))
    return exploits


def tune_checkpoint_histories(directory: Path, trial_id: str) -> dict[int, list]:
    """Histories of every Tune checkpoint a trial reported, by epochs done."""
    found = {}
    for cohort_file in directory.glob(f"train_cohort_{trial_id}_*/checkpoint_*/cohort.json"):
        position = json.loads(cohort_file.read_text())
        found.setdefault(position["epochs_done"], []).append(position["history"])
    return found


@pytest.mark.ray
def test_pbt_exploit_continues_a_clone_and_its_replay_reproduces_the_trial(ray_runtime, tmp_path):
    space = {**SPACE, "distillation.gate.on_start": {"uniform": [0.1, 0.9]}}
    gate = "distillation.gate={kind: phases, period_epochs: 1, on_start: 0.5}"
    code = sweep.main(sweep_args(tmp_path, "--scheduler", "pbt", "--num-samples", "2", "--perturbation-interval", "2",
                                 "--backend", "sequential", "--set", "epochs=3", "--set", gate, space=space))
    directory = tmp_path / "sweeps" / "s"
    assert code == 0
    exploits = pbt_lineage(directory)
    assert exploits, "no exploit happened"
    target, clone, _, new_config = exploits[-1]
    history = load_latest_checkpoint(trial_run_dir(directory, target), 2)[0]["history"]
    assert len(history) == 3
    # the target's history is one of the clone's checkpoints (the one PBT handed over: synchronous
    # PBT's logged clone iteration may lag it), then continues with the mutated curriculum
    restored = max(epochs for epochs, histories in tune_checkpoint_histories(directory, clone).items()
                   if history[:epochs] in histories)
    assert 1 <= restored < 3
    after = history[restored]["curriculum"]
    assert after["distillation.gate"]["on_start"] == new_config["distillation.gate.on_start"]
    assert after != history[restored - 1]["curriculum"]

    # replay: the exported plain config follows the trial's schedule at every step and, trained
    # from scratch with the same seed and threads, reproduces its accuracy history
    from codistill.tuning.replay import replay_config

    trial_raw = yaml.safe_load((trial_run_dir(directory, target) / "config.yaml").read_text())
    replay = parse_config(replay_config(trial_raw, history))
    assert replay.distillation.gate["kind"] == "steps"
    for record in history:
        for step in range(0, 4):
            progress = Progress(epoch=record["epoch"] - 1, step=step, steps_per_epoch=4, total_epochs=3)
            for path, spec in record["curriculum"].items():
                exported = {"distillation.weight": replay.distillation.weight,
                            "distillation.gate": replay.distillation.gate,
                            "distillation.methods.0.params.temperature":
                                replay.distillation.methods[0].params["temperature"]}[path]
                assert as_schedule(exported)(progress) == as_schedule(spec)(progress), (path, record["epoch"], step)
    replayed = run_cohort(replay, tmp_path / "replay", SequentialCohort)
    assert [h["distill_strength"] for h in replayed["history"]] == [h["distill_strength"] for h in history]
    assert [[p["val_accuracy"] for p in h["peers"]] for h in replayed["history"]] == \
        [[p["val_accuracy"] for p in h["peers"]] for h in history]


def test_a_seeded_population_scheduler_draws_from_its_own_streams():
    from codistill.tuning.schedulers import build_scheduler

    dimensions = [parse_dimension(key, spec, key) for key, spec in SPACE.items()]

    def draws(seed: int) -> list:
        scheduler = build_scheduler("pbt", dimensions, epochs=4, interval=1, grace_epochs=1, seed=seed)
        clone = SimpleNamespace(config={"distillation.weight.value": 1.0,
                                        "distillation.methods.0.params.temperature": 3.0})
        found = []
        for _ in range(20):
            with scheduler.own_random_streams():
                found.append(scheduler._get_new_config(SimpleNamespace(config={}), clone)[0])
        return found

    random.seed(1)
    before = random.random()
    random.seed(1)
    assert draws(7) == draws(7) != draws(8)
    assert random.random() == before  # the driver's stream is left as it was


def exploit_decisions(directory: Path) -> list[tuple[int, int, dict]]:
    """(target trial index, clone trial index, new config) of every exploit (not the logged clone
    epoch: synchronous PBT's may lag the checkpoint it hands over, by timing)."""
    return [(int(target.split("_")[0]), int(clone.split("_")[0]), new_config)
            for target, clone, _, _, _, new_config
            in map(json.loads, (directory / "pbt_global.txt").read_text().splitlines())]


@pytest.mark.ray
def test_two_pbt_sweeps_with_the_same_seed_make_the_same_decisions(ray_runtime, tmp_path):
    decisions = []
    for name in ("first", "second"):
        arguments = sweep_args(tmp_path, "--scheduler", "pbt", "--num-samples", "2", "--perturbation-interval", "1",
                               "--backend", "sequential", "--set", "epochs=3")
        arguments[arguments.index("--name") + 1] = name
        assert sweep.main(arguments) == 0
        decisions.append(exploit_decisions(tmp_path / "sweeps" / name))
    assert decisions[0] and decisions[0] == decisions[1]


@pytest.mark.ray
def test_resume_does_not_rerun_finished_trials(ray_runtime, tmp_path, capsys):
    """One trial on the Ray backend (peers in the trial's bundles); resuming the sweep reruns nothing."""
    assert sweep.main(sweep_args(tmp_path, "--scheduler", "fifo", "--num-samples", "1", "--set", "epochs=1")) == 0
    directory = tmp_path / "sweeps" / "s"
    (row,) = trial_table(directory)
    run_dir = trial_run_dir(directory, row["trial"])
    stamp = (run_dir / "results.json").stat().st_mtime_ns
    progress_files = list(directory.glob("train_cohort_*/progress.csv"))
    reports = [f.read_text() for f in progress_files]
    capsys.readouterr()
    assert sweep.main(["--resume", str(directory)]) == 0
    assert (run_dir / "results.json").stat().st_mtime_ns == stamp
    assert [f.read_text() for f in progress_files] == reports
    assert trial_table(directory) == [row]
    assert sweep.main(["--resume", str(tmp_path / "nothing")]) == 2


def test_replay_joins_segments_into_steps_and_refuses_a_changed_sparsity_target():
    from codistill.tuning.replay import piecewise_curriculum

    ramp = {"kind": "ramp", "value": 1.0, "ramp_epochs": 4}
    history = [{"curriculum": {"distillation.weight": ramp, "peers.0.sparsity.target": 0.5}} for _ in range(3)]
    history += [{"curriculum": {"distillation.weight": {**ramp, "value": 1.5}, "peers.0.sparsity.target": 0.5}}]
    assert piecewise_curriculum(history) == {
        "distillation.weight": {"kind": "steps", "values": [ramp, {**ramp, "value": 1.5}], "epochs": [3]},
        "peers.0.sparsity.target": 0.5}
    history[-1]["curriculum"]["peers.0.sparsity.target"] = 0.7
    with pytest.raises(ValueError, match="'peers.0.sparsity.target' changed"):
        piecewise_curriculum(history)


@pytest.mark.ray
def test_a_trial_that_keeps_failing_does_not_stop_the_sweep(ray_runtime, tmp_path):
    # lr 1e6 passes the front door (finite, > 0) but the peer diverges in the trial, which stops it
    space = {"peers.0.optimizer.lr": {"grid": [0.05, 1.0e6]}}
    assert sweep.main(sweep_args(tmp_path, "--scheduler", "fifo", "--num-samples", "1", "--max-failures", "1",
                                 "--backend", "sequential", "--set", "epochs=2", space=space)) == 0
    rows = {float(row["peers.0.optimizer.lr"]): row for row in trial_table(tmp_path / "sweeps" / "s")}
    assert rows[0.05]["state"] == "complete" and rows[1.0e6]["state"] == "failed"
    errors = list((tmp_path / "sweeps" / "s").glob("train_cohort_*/error.txt"))
    assert errors and "Failure # 2" in errors[0].read_text()  # tried, retried once, then given up
