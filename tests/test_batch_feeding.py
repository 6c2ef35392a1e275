"""Feeding a peer: a data-parallel worker decodes only its rows of an image-folder batch, batches
prepared ahead in a background thread equal those prepared in the step, the wait for a batch is
a step metric, and an unreadable image fails the step that holds it, naming the file."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import tiny_raw
from PIL import Image

from codistill import metrics as m
from codistill.cohort.sequential import SequentialCohort
from codistill.cohort.worker_group import reduce_metrics
from codistill.commands import online
from codistill.data import build_dataset
from codistill.data import imagefolder as imagefolder_module
from codistill.data.background import single_threaded_pool
from codistill.errors import UnreadableFile
from codistill.peer import PeerTrainer
from codistill.peer.batches import BatchSource
from codistill.peer.data_parallel import worker_rows
from codistill.validation import parse_config

SIZES = [(40, 30), (20, 50), (33, 33), (64, 48), (30, 30), (25, 60), (50, 21), (18, 44), (47, 29)]


def write_tree(root: Path) -> None:
    """Nine training images of varied sizes in three classes (so crops need the sizes), two for validation."""
    for index, size in enumerate(SIZES):
        folder = root / "train" / f"class{index % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (torch.arange(size[0] * size[1] * 3) * (index + 7) % 251).to(torch.uint8)
        Image.fromarray(pixels.view(size[1], size[0], 3).numpy()).save(folder / f"{index}.png")
    for index in range(3):
        (root / "val" / f"class{index}").mkdir(parents=True)
        Image.new("RGB", (24, 24), (80 * index, 20, 40)).save(root / "val" / f"class{index}" / "0.png")


def imagefolder_raw(root: Path, prefetch: int, **data) -> dict:
    return tiny_raw(data={"dataset": "imagefolder", "root": str(root), "image_size": 16, "batch_size": 4,
                          "prefetch_batches": prefetch, **data})


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    write_tree(tmp_path)
    return tmp_path


@pytest.mark.parametrize("augment", [True, False])
def test_each_worker_decodes_only_its_rows_and_gets_them_as_in_the_whole_batch(tree, monkeypatch, augment):
    dataset = build_dataset("imagefolder", root=str(tree), train_fraction=1.0, label_noise=0.0, seed=0,
                            image_size=16)
    indices = torch.tensor([8, 3, 0, 5, 1, 7, 2])
    whole, labels = dataset.train_batch(indices, dataset.augmentation_generator(0, 1, 2, 0), augment)
    read = []
    original = imagefolder_module._read_rgb
    monkeypatch.setattr(imagefolder_module, "_read_rgb", lambda path: read.append(path) or original(path))
    for rank in range(3):
        rows = worker_rows(len(indices), 3, rank)
        read.clear()
        images, worker_labels = dataset.train_rows(indices, dataset.augmentation_generator(0, 1, 2, 0), augment, rows)
        assert torch.equal(images, whole[rows]) and torch.equal(worker_labels, labels[rows])
        assert sorted(read) == sorted(dataset.train_files[i] for i in indices[rows].tolist())


def every_step(source: BatchSource, epochs: int) -> list:
    return [source.batch(epoch, step) for epoch in range(epochs) for step in range(source.steps_per_epoch)]


def test_prefetched_batches_equal_batches_prepared_in_the_step(tree):
    config = parse_config(imagefolder_raw(tree, prefetch=0))
    dataset = build_dataset("imagefolder", root=str(tree), train_fraction=1.0, label_noise=0.0, seed=0,
                            image_size=16)
    in_step = BatchSource(config, 0, dataset, torch.device("cpu"))
    ahead = BatchSource(parse_config(imagefolder_raw(tree, prefetch=2)), 0, dataset, torch.device("cpu"),
                        rows=lambda size: worker_rows(size, 2, 1))
    assert in_step.prefetch is None and ahead.prefetch is not None
    expected = every_step(in_step, config.epochs)
    got = every_step(ahead, config.epochs) + [ahead.batch(1, 0), ahead.batch(0, 1), ahead.batch(0, 1)]  # jumps
    for a, b in zip(expected + [expected[2], expected[1], expected[1]], got, strict=True):
        rows = worker_rows(a.batch_size, 2, 1)
        assert (a.progress, a.batch_size) == (b.progress, b.batch_size)
        assert torch.equal(a.images[rows], b.images) and torch.equal(a.targets[rows], b.targets)
        assert torch.equal(a.indices[rows], b.indices)


STEP_NUMBERS = (m.LOSS_TOTAL, m.LOSS_CE, m.TRAIN_CORRECT, m.TRAIN_EXAMPLES)


@pytest.mark.parametrize("data", ["digits", "imagefolder"])
def test_training_numbers_do_not_depend_on_prefetch(tree, data):
    def run(prefetch: int) -> tuple[list, list]:
        if data == "digits":
            raw = tiny_raw()
            raw["data"]["prefetch_batches"] = prefetch
        else:
            raw = imagefolder_raw(tree, prefetch)
        cohort = SequentialCohort(parse_config(raw))
        rows = [row for epoch in range(2) for row in cohort.train_epoch(epoch)]
        return rows, [peer.evaluate("val")[0] for peer in cohort.peers]

    (plain_rows, plain_logits), (ahead_rows, ahead_logits) = run(0), run(3)
    for plain, ahead in zip(plain_rows, ahead_rows, strict=True):
        for plain_peer, ahead_peer in zip(plain, ahead, strict=True):
            assert [plain_peer[key] for key in STEP_NUMBERS] == [ahead_peer[key] for key in STEP_NUMBERS]
            assert ahead_peer[m.DATA_WAIT_SECONDS] >= 0.0
    assert all(torch.equal(a, b) for a, b in zip(plain_logits, ahead_logits, strict=True))


def test_the_data_wait_is_a_step_metric_and_a_peer_waits_for_its_slowest_worker():
    cohort = SequentialCohort(parse_config(tiny_raw()))
    [first, *_] = cohort.train_epoch(0)
    assert all(0.0 <= peer[m.DATA_WAIT_SECONDS] <= peer[m.STEP_SECONDS] for peer in first)
    workers = [{m.TRAIN_EXAMPLES: 32.0, m.DATA_WAIT_SECONDS: 0.5}, {m.TRAIN_EXAMPLES: 32.0, m.DATA_WAIT_SECONDS: 2.0}]
    assert reduce_metrics(workers)[m.DATA_WAIT_SECONDS] == 2.0


@pytest.mark.parametrize("prefetch", [0, 2])
def test_an_unreadable_image_fails_its_own_step_naming_the_file(tree, prefetch):
    config = parse_config(imagefolder_raw(tree, prefetch, train_fraction=1.0))
    trainer = PeerTrainer(config, 0)
    broken_index = int(trainer.dataset.batch_indices(0, 0, 4)[1][0])
    broken = trainer.dataset.train_files[broken_index]
    Path(broken).write_bytes(b"not an image")
    trainer.forward(0, 0)  # prefetches step 1, whose error waits for step 1
    with pytest.raises(UnreadableFile, match=f"cannot read {broken}: ") as error:
        trainer.forward(0, 1)
    assert error.value.filename == broken


def test_the_front_door_reports_an_unreadable_image_in_one_line(tree, capsys):
    broken = tree / "train" / "class1" / "4.png"
    broken.write_bytes(b"not an image")
    (tree / "c.yaml").write_text(yaml.safe_dump(imagefolder_raw(tree, prefetch=2)))
    assert online.main(["--config", str(tree / "c.yaml"), "--run-dir", str(tree / "run"),
                        "--backend", "sequential"]) == 1
    assert f"codistill: cannot read {broken}: " in capsys.readouterr().err


def test_decoding_threads_compute_with_one_torch_thread_and_leave_the_default_as_it_was():
    pool = single_threaded_pool(2, "codistill-test")
    counts = list(pool.map(lambda _: torch.get_num_threads(), range(4)))
    later: list[int] = []
    thread = threading.Thread(target=lambda: later.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    assert counts == [1] * 4 and later == [torch.get_num_threads()]
    pool.shutdown()


def batch_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("codistill-batches-7")]


def test_the_prefetch_thread_ends_with_its_source(tree):
    config = parse_config(imagefolder_raw(tree, prefetch=2))
    dataset = build_dataset("imagefolder", root=str(tree), train_fraction=1.0, label_noise=0.0, seed=0,
                            image_size=16)
    source = BatchSource(config, 7, dataset, torch.device("cpu"))
    source.batch(0, 0)
    assert batch_threads()
    del source
    deadline = time.monotonic() + 10
    while batch_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not batch_threads()


@pytest.mark.parametrize("arguments, field", [
    (["--rounds", "0"], "--rounds"), (["--images", "-3"], "--images"), (["--loader-workers", "-1"], "--loader-workers"),
    (["--prefetch", "0"], "--prefetch"), (["--step-seconds", "-0.5"], "--step-seconds"),
    (["--batch-size", "x"], "--batch-size"),
])
def test_the_feeding_benchmark_refuses_a_bad_option_in_one_line_before_writing(tmp_path, capsys, arguments, field):
    from codistill.commands.benchmark_feeding import main

    out = tmp_path / "rates.json"
    assert main([*arguments, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.splitlines()) == 1 and field in captured.err
    assert not out.exists()
