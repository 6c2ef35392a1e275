import dataclasses
import re
import typing
from pathlib import Path

import pytest
import yaml
from conftest import FASHION_MNIST_INSTALLED, FASHION_MNIST_MISSING, tiny_raw

from codistill.config import RunConfig, apply_override
from codistill.errors import ConfigError
from codistill.validation import load_config, parse_config, validate


def field_of(raw) -> str:
    with pytest.raises(ConfigError) as error:
        parse_config(raw)
    return error.value.field


def test_tiny_config_parses_into_typed_objects():
    config = parse_config(tiny_raw())
    assert config.peers[1].model == "cnn" and config.peers[1].optimizer.lr == 0.05
    assert config.distillation.methods[0].name == "kd"
    assert config.data.label_noise == 0.2 and isinstance(config.data.label_noise, float)


SHIPPED = sorted(p for p in Path(__file__).resolve().parent.parent.glob("jobs/configs/*.yaml")
                 if "space" not in p.stem)  # search spaces: tests/test_sweep.py


def test_there_are_shipped_configs():
    assert SHIPPED


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: path.stem)
def test_shipped_configs_validate(path):
    """Online cohorts, and single-network configs (teachers, students trained alone); configs
    naming teacher checkpoints are exercised by the offline tests, which create the checkpoints.
    Fashion-MNIST's configs need the real files (their front door checks them)."""
    raw = yaml.safe_load(path.read_text())
    if "teachers" in raw:
        return
    if raw.get("data", {}).get("dataset") == "fashion_mnist" and not FASHION_MNIST_INSTALLED:
        pytest.skip(FASHION_MNIST_MISSING)
    mode = "offline" if len(raw["peers"]) == 1 else "online"
    load_config(path, ["independent=true"] if mode == "offline" else [], mode=mode)


@pytest.mark.parametrize("change, field", [
    ({"peers": [{"model": "mlp"}, {"model": "resnet7"}]}, "peers[1].model"),
    ({"peers": [{"model": "mlp"}]}, "peers"),
    ({"data": {"dataset": "mnist-9000"}}, "data.dataset"),
    ({"data": {"dataset": "cifar10", "root": "/definitely/missing"}}, "data.root"),
    ({"data": {"dataset": "cifar10"}}, "data.root"),
    ({"data": {"dataset": "digits", "train_fraction": 0.0}}, "data.train_fraction"),
    ({"data": {"dataset": "digits", "train_fraction": 1.5}}, "data.train_fraction"),
    ({"data": {"dataset": "digits", "label_noise": 1.0}}, "data.label_noise"),
    ({"distillation": {"methods": [{"name": "kd", "params": {"temperature": 0}}]}},
     "distillation.methods[0].params.temperature"),
    ({"distillation": {"methods": [{"name": "kd", "params": {"temperature": -2.0}}]}},
     "distillation.methods[0].params.temperature"),
    ({"distillation": {"weight": -0.5}}, "distillation.weight"),
    ({"distillation": {"weight": {"kind": "linear", "start": 1.0, "end": -1.0}}}, "distillation.weight"),
    ({"distillation": {"methods": [{"name": "hinton2"}]}}, "distillation.methods[0].name"),
    ({"distillation": {"methods": [{"name": "kd", "params": {"tau": 2}}]}}, "distillation.methods[0].params.tau"),
    ({"distillation": {"teacher": "oracle"}}, "distillation.teacher"),
    ({"distillation": {"policy": "nowhere.module:Policy"}}, "distillation.policy.name"),
    ({"runtime": {"amp": "fp8"}}, "runtime.amp"),
    ({"runtime": {"exchange": "mpi"}}, "runtime.exchange"),
    ({"runtime": {"max_steps_in_flight": "many"}}, "runtime.max_steps_in_flight"),
    ({"epochs": "ten"}, "epochs"),
    ({"colour": "blue"}, "colour"),
    ({"data": {"dataset": "digits", "bach_size": 3}}, "data.bach_size"),
])
def test_bad_values_name_their_field(change, field):
    assert field_of(tiny_raw(**change)) == field


def test_message_is_readable():
    with pytest.raises(ConfigError, match=r"config error in 'peers\[1\]\.model': unknown model 'resnet7'"):
        parse_config(tiny_raw(peers=[{"model": "mlp"}, {"model": "resnet7"}]))


def test_overrides_reach_nested_fields(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_raw()))
    config = load_config(path, ["peers.0.optimizer.lr=0.2", "distillation.weight=0.5", "seed=7",
                                "runtime.amp=bf16"])
    assert config.peers[0].optimizer.lr == 0.2 and config.distillation.weight == 0.5
    assert config.seed == 7 and config.runtime.amp == "bf16"


def test_override_needs_key_value():
    with pytest.raises(ConfigError) as error:
        apply_override({}, "seed")
    assert error.value.field == "--set"


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_config(tmp_path / "nope.yaml")
    assert error.value.field == "--config"


def test_the_readme_config_example_is_valid():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    example = readme.split("### Config\n\n```yaml\n", 1)[1].split("```", 1)[0]
    config = parse_config(yaml.safe_load(example))
    assert [p.model for p in config.peers] == ["mlp", "cnn", "resnet8"]
    assert config.peers[2].sparsity.target == 0.9 and config.peers[2].lr_schedule.milestones == (15, 25)


def test_numbers_are_read_as_users_type_them(tmp_path):
    """YAML 1.1 reads ``1e-3`` as a string; codistill reads it, in files and in --set, as a float."""
    raw = tiny_raw()
    del raw["runtime"]
    text = yaml.safe_dump(raw).replace("lr: 0.05", "lr: 1e-3", 1)
    path = tmp_path / "c.yaml"
    path.write_text(text + "runtime: {progress_every_seconds: 1E1, log_every_steps: 2}\n")
    config = load_config(path, ["peers.1.optimizer.lr=2e-2", "peers.1.optimizer.weight_decay='5e-4'",
                                "distillation.weight=1e0", "distillation.methods.0.params.temperature=4e0"])
    assert config.peers[0].optimizer.lr == 1e-3 and config.peers[1].optimizer.lr == 2e-2
    assert config.peers[1].optimizer.weight_decay == 5e-4 and config.runtime.progress_every_seconds == 10.0
    assert config.distillation.weight == 1.0 and config.distillation.methods[0].params["temperature"] == 4.0


@pytest.mark.parametrize("change, field", [
    ({"data": {"dataset": "digits", "train_fraction": float("nan")}}, "data.train_fraction"),
    ({"distillation": {"gate": float("inf")}}, "distillation.gate"),
    ({"distillation": {"methods": [{"name": "dckd", "params": {"joint_target_share": 1.5}}]}},
     "distillation.methods[0].params.joint_target_share"),
    ({"distillation": {"methods": [{"name": "feature_decoupled", "params": {"pool_kernel": 1.5}}]}},
     "distillation.methods[0].params.pool_kernel"),
])
def test_component_hooks_name_their_parameters(change, field):
    assert field_of(tiny_raw(**change)) == field


DOC_SECTIONS = {"": "## Top level", "data": "## `data`", "peers": "## `peers[k]`",
                "teachers": "## `teachers[i]` (offline)", "distillation": "## `distillation`",
                "runtime": "## `runtime`"}


def declared_fields(cls: type, section: str = "") -> dict[str, set[str]]:
    """Each section of docs/configuration.md → the fields declared in it (nested ones included)."""
    found: dict[str, set[str]] = {}
    for spec in dataclasses.fields(cls):
        found.setdefault(section, set()).add(spec.name)
        kind = typing.get_type_hints(cls)[spec.name]
        nested = [arg for arg in (kind, *typing.get_args(kind)) if dataclasses.is_dataclass(arg)]
        for inner in nested:
            for key, names in declared_fields(inner, section or spec.name).items():
                found.setdefault(key, set()).update(names)
    return found


def test_every_declared_field_is_documented_and_every_documented_field_declared():
    text = (Path(__file__).resolve().parent.parent / "docs" / "configuration.md").read_text()
    for section, names in declared_fields(RunConfig).items():
        body = re.split(r"\n##+ ", text.split(DOC_SECTIONS[section] + "\n", 1)[1], maxsplit=1)[0]
        documented = set(re.findall(r"^\| `([a-z_]+)` \|", body, flags=re.MULTILINE))
        assert names - documented == set(), f"declared but not documented under {DOC_SECTIONS[section]}"
        assert documented - names == set(), f"documented under {DOC_SECTIONS[section]} but not declared"


def schema_classes(cls: type) -> set[type]:
    """``cls`` and every schema dataclass reachable from its fields."""
    inner = {arg for kind in typing.get_type_hints(cls).values() for arg in (kind, *typing.get_args(kind))
             if dataclasses.is_dataclass(arg)}
    return {cls}.union(*(schema_classes(kind) for kind in inner))


def test_every_declared_field_says_what_it_means():
    undocumented = [f"{cls.__name__}.{spec.name}" for cls in schema_classes(RunConfig)
                    for spec in dataclasses.fields(cls) if not spec.metadata.get("doc")]
    assert undocumented == []


@pytest.mark.parametrize("change, field", [
    ({"data": {"eval_batch_size": 0}}, "data.eval_batch_size"),
    ({"data": {"probe_fraction": 0.7}}, "data.probe_fraction"),
    ({"data": {"classes": [1, 1]}}, "data.classes"),
    ({"data": {"classes": [1, "two"]}}, "data.classes"),
    ({"peers": [{"model": "mlp", "optimizer": {"lr": 0}}, {"model": "cnn"}]}, "peers[0].optimizer.lr"),
    ({"peers": [{"model": "mlp", "lr_schedule": {"milestones": [-1]}}, {"model": "cnn"}]},
     "peers[0].lr_schedule.milestones"),
    ({"peers": [{"model": "mlp", "sparsity": {"target": 1.0}}, {"model": "cnn"}]}, "peers[0].sparsity.target"),
    ({"peers": [{"model": "mlp"}, {"name": "b"}]}, "peers[1].model"),
    ({"peers": [{"model": "mlp"}, {"model": None}]}, "peers[1].model"),
    ({"distillation": {"methods": [{"params": {}}]}}, "distillation.methods[0].name"),
    ({"distillation": {"methods": [{"name": "kd", "weight": -1}]}}, "distillation.methods[0].weight"),
    ({"runtime": {"placement": "anywhere"}}, "runtime.placement"),
    ({"runtime": {"log_every_steps": None}}, "runtime.log_every_steps"),
    ({"epochs": 0}, "epochs"),
])
def test_each_field_is_checked_where_it_is_declared(change, field):
    assert field_of(tiny_raw(**change)) == field


def test_fields_read_their_short_forms_and_keep_their_types():
    config = parse_config(tiny_raw(data={"classes": [3, 1], "batch_size": 16}, runtime={"amp": False},
                                   distillation={"policy": "uniform", "methods": [{"name": "kd"}]}))
    assert config.data.classes == (1, 3) and config.runtime.amp == "off"
    assert config.distillation.policy.name == "uniform" and config.distillation.policy.params == {}
    assert [peer.name for peer in config.peers] == ["mlp", "cnn"] and isinstance(config.peers, tuple)
    unnamed = parse_config(tiny_raw(peers=[{"model": "mlp"}, {"model": "cnn"}]))
    assert [peer.name for peer in unnamed.peers] == ["mlp-0", "cnn-1"]


def test_a_config_built_in_code_meets_the_same_ranges():
    config = parse_config(tiny_raw())
    with pytest.raises(ConfigError) as error:
        validate(dataclasses.replace(config, data=dataclasses.replace(config.data, label_noise=1.5)))
    assert error.value.field == "data.label_noise"


def test_the_exchange_names_a_config_accepts_are_the_registered_exchanges():
    from codistill.config import EXCHANGE_NAMES
    from codistill.registry import EXCHANGES

    assert sorted(EXCHANGE_NAMES) == EXCHANGES.names()


@pytest.mark.parametrize("changes", [
    {"distillation": {**tiny_raw()["distillation"], "teacher_source": "replicas"}},
    {"distillation": {**tiny_raw()["distillation"], "policy": "policies.learned:LearnedPolicy"},
     "data": {**tiny_raw()["data"], "probe_fraction": 0.2}},
    {"runtime": {"exchange": "collective"}},
], ids=["replicas", "learned-policy", "collective"])
def test_data_parallel_peers_run_what_one_device_runs(changes):
    """R > 1 is accepted with what a peer on one device runs (the Ray tests check the numbers)."""
    peers = tiny_raw()["peers"]
    peers[1]["data_parallel"] = 2
    assert parse_config(tiny_raw(peers=peers, **changes)).peers[1].data_parallel == 2
