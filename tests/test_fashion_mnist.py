"""fashion_mnist: the IDX loader on tiny files written here (gzipped and raw, damaged ones), the
download path (torchvision's downloader replaced), the official test split end to end, and, where
the Debian package is installed (``make test`` installs it as root), the real files."""

from __future__ import annotations

import gzip
import json
import re
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import needs_fashion_mnist, tiny_raw, write_fashion_mnist, write_idx

from codistill.cohort.sequential import SequentialCohort
from codistill.data import build_dataset, data_shape
from codistill.data import fashion_mnist as fm
from codistill.data.splits import carve_validation
from codistill.errors import ConfigError
from codistill.runner import RESULTS_FILE, prepare_run_dir, run_cohort
from codistill.validation import parse_config

TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"
TEST_IMAGES, TEST_LABELS = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"


def load(root: Path | None, **settings) -> fm.InMemoryDataset:
    options = {"train_fraction": 1.0, "label_noise": 0.0, "seed": 0} | settings
    return build_dataset("fashion_mnist", root=None if root is None else str(root), **options)


def check(root: Path | None, **data) -> None:
    data_shape(parse_config(tiny_raw(data={"dataset": "fashion_mnist",
                                                    "root": None if root is None else str(root), **data})).data)


def pixels(images: torch.Tensor) -> np.ndarray:
    """Normalized images back to their uint8 pixels ``[N, 28, 28]``."""
    return torch.round((images[:, 0] * fm.STD + fm.MEAN) * 255).to(torch.uint8).numpy()


def all_of(dataset, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    batches = list(dataset.eval_batches(1000, split))
    return torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])


@pytest.mark.parametrize("gz", [True, False], ids=["gzipped", "raw"])
def test_the_loader_reads_the_four_files_into_the_official_splits(tmp_path, gz):
    written = write_fashion_mnist(tmp_path, train=40, test=10, gz=gz)
    dataset = load(tmp_path, val_fraction=0.25)
    info = dataset.info
    assert (info.num_classes, info.in_channels, info.image_size, info.train_size, info.val_size) == (10, 1, 28, 30, 10)
    assert dataset.train_images.dtype == torch.uint8 and dataset.train_images.shape == (30, 1, 28, 28)

    kept, val = carve_validation(torch.from_numpy(written[TRAIN_LABELS].astype(np.int64)), 0.25, "fashion_mnist")
    images, labels = dataset.train_batch(torch.arange(30), torch.Generator(), augment=False)
    assert images.dtype == torch.float32 and np.array_equal(pixels(images), written[TRAIN_IMAGES][kept.numpy()])
    assert labels.tolist() == written[TRAIN_LABELS][kept.numpy()].tolist()
    val_images, val_labels = all_of(dataset, "val")
    assert np.array_equal(pixels(val_images), written[TRAIN_IMAGES][val.numpy()])
    assert torch.bincount(val_labels).tolist() == [1] * 10
    test_images, test_labels = all_of(dataset, "test")
    assert np.array_equal(pixels(test_images), written[TEST_IMAGES])
    assert test_labels.tolist() == written[TEST_LABELS].tolist()

    augmented, _ = dataset.train_batch(torch.arange(8), dataset.augmentation_generator(0, 0, 0, 0), augment=True)
    assert augmented.shape == (8, 1, 28, 28) and not torch.equal(augmented, images[:8])
    check(tmp_path, val_fraction=0.25)


def test_gzipped_and_raw_files_mix_and_train_fraction_noise_and_probe_apply_after_the_carve(tmp_path):
    write_fashion_mnist(tmp_path, train=200, test=10)
    for name in (TRAIN_LABELS, TEST_IMAGES):
        (tmp_path / name).write_bytes(gzip.decompress((tmp_path / f"{name}.gz").read_bytes()))
        (tmp_path / f"{name}.gz").unlink()
    full = load(tmp_path, val_fraction=0.1)
    reduced = load(tmp_path, val_fraction=0.1, train_fraction=0.5, label_noise=0.2, seed=3)
    assert (full.info.train_size, full.info.val_size, reduced.info.train_size) == (180, 20, 90)
    assert (reduced.train_labels() != reduced.clean_train_labels).sum() == round(0.2 * 90)
    for split in ("val", "test"):
        assert all(torch.equal(a, b) for a, b in zip(all_of(full, split), all_of(reduced, split)))
    reduced.hold_out_probe(0.2, seed=3)
    assert reduced.info.train_size == 72 and reduced.probe_batch(3, 0, 0, 8)[0].shape == (8, 1, 28, 28)


def test_validation_leaves_every_class_a_training_image(tmp_path):
    write_fashion_mnist(tmp_path / "fifteen", train=15)  # classes 0–4 hold two images, classes 5–9 one
    dataset = load(tmp_path / "fifteen", val_fraction=0.5)
    assert torch.bincount(dataset.train_labels()).tolist() == [1] * 10
    assert sorted(all_of(dataset, "val")[1].tolist()) == [0, 1, 2, 3, 4]
    write_fashion_mnist(tmp_path / "ten", train=10)
    with pytest.raises(ConfigError, match="no class of two images") as error:
        load(tmp_path / "ten", val_fraction=0.1)
    assert error.value.field == "data.val_fraction"


def damage(name: str, change) -> callable:
    """A builder of tiny files with ``name`` (gzipped) replaced by ``change(its decompressed bytes)``."""
    def build(root: Path) -> None:
        write_fashion_mnist(root)
        path = root / f"{name}.gz"
        path.write_bytes(gzip.compress(change(gzip.decompress(path.read_bytes()))))
    return build


DAMAGED = [
    pytest.param(damage(TRAIN_IMAGES, lambda data: data[:-100]), "truncated", id="truncated"),
    pytest.param(lambda root: (write_fashion_mnist(root), (root / f"{TEST_LABELS}.gz").write_bytes(
        (root / f"{TEST_LABELS}.gz").read_bytes()[:-20])), "cannot be read", id="truncated-gzip"),
    pytest.param(damage(TRAIN_LABELS, lambda data: b"\x00\x00\x08\x03" + data[4:]), "magic number", id="wrong-magic"),
    pytest.param(damage(TEST_IMAGES, lambda data: data[:12] + b"\x00\x00\x00\x20" + data[16:]), "not 28×28",
                 id="wrong-image-size"),
    pytest.param(lambda root: (write_fashion_mnist(root), write_idx(root / f"{TRAIN_LABELS}.gz", 0x801,
                                                                    np.zeros(39, np.uint8), gz=True)),
                 "40 images but 39 labels", id="count-mismatch"),
    pytest.param(lambda root: (write_fashion_mnist(root), write_idx(root / f"{TEST_LABELS}.gz", 0x801,
                                                                    np.full(10, 12, np.uint8), gz=True)),
                 "beyond its 10 classes", id="label-out-of-range"),
    pytest.param(lambda root: (write_fashion_mnist(root), write_idx(root / f"{TEST_LABELS}.gz", 0x801,
                                                                    np.zeros(10_000, np.uint8), gz=True)),
                 "not Fashion-MNIST's 15d484375f8d13e6eb1aabb0c3f46965", id="official-size-wrong-md5"),
    pytest.param(lambda root: (write_fashion_mnist(root), (root / f"{TEST_IMAGES}.gz").unlink()),
                 re.escape(f"needs {TEST_IMAGES}[.gz] in data.root"), id="missing-file"),
]


@pytest.mark.parametrize("build, problem", DAMAGED)
def test_a_damaged_or_missing_file_is_one_data_root_error_saying_how_to_get_the_data(tmp_path, build, problem):
    build(tmp_path)
    for attempt in (lambda: check(tmp_path), lambda: load(tmp_path, val_fraction=0.25)):
        with pytest.raises(ConfigError, match=problem) as error:
            attempt()
        assert error.value.field == "data.root" and "\n" not in str(error.value)
        assert "apt-get install dataset-fashion-mnist" in str(error.value)


def test_without_root_the_package_folder_is_used_and_its_absence_explained(tmp_path, monkeypatch):
    monkeypatch.setattr(fm, "DEFAULT_ROOT", str(tmp_path / "not-installed"))
    with pytest.raises(ConfigError, match=r"data.root is not set.*apt-get install dataset-fashion-mnist") as error:
        check(None)
    assert error.value.field == "data.root"
    with pytest.raises(ConfigError, match="set it to a writable folder") as error:
        check(None, download=True)
    assert error.value.field == "data.root"
    write_fashion_mnist(tmp_path / "not-installed")
    check(None)
    assert load(None, val_fraction=0.25).info.train_size == 30


def test_download_fetches_the_missing_files_through_torchvision_and_a_failure_leaves_nothing(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tv_utils

    source = tmp_path / "mirror"
    write_fashion_mnist(source)
    fetched = []

    def fake_download(url: str, root: str, filename: str, md5: str) -> None:
        fetched.append((url, filename, md5))
        (Path(root) / filename).write_bytes((source / filename).read_bytes())

    def offline(url: str, root: str, filename: str, md5: str) -> None:
        (Path(root) / filename).write_bytes(b"partial")
        raise urllib.error.URLError("no route to host")

    root = tmp_path / "data"
    root.mkdir()
    (root / f"{TRAIN_IMAGES}.gz").write_bytes((source / f"{TRAIN_IMAGES}.gz").read_bytes())
    monkeypatch.setattr(tv_utils, "download_url", offline)
    with pytest.raises(ConfigError, match="could not fetch.*no route to host.*apt-get install") as error:
        check(root, download=True)
    assert error.value.field == "data.download" and sorted(p.name for p in root.iterdir()) == [f"{TRAIN_IMAGES}.gz"]
    with pytest.raises(ConfigError, match="missing|needs") as error:
        check(root)  # without data.download nothing is fetched
    assert error.value.field == "data.root"

    monkeypatch.setattr(tv_utils, "download_url", fake_download)
    check(root, download=True)
    expected = sorted(f"{f.name}.gz" for f in fm.FILES.values() if f.name != TRAIN_IMAGES)
    assert sorted(name for _, name, _ in fetched) == expected
    assert all(url.startswith("http") and len(md5) == 32 for url, _, md5 in fetched)
    assert sorted(p.name for p in root.iterdir()) == sorted(f"{f.name}.gz" for f in fm.FILES.values())
    fetched.clear()
    check(root, download=True)  # everything present: nothing fetched
    assert fetched == [] and load(root, val_fraction=0.25).info.val_size == 10


def test_the_official_test_split_is_evaluated_after_the_last_epoch(tmp_path):
    torch.set_num_threads(1)
    write_fashion_mnist(tmp_path / "data", train=60, test=20)
    config = parse_config(tiny_raw(epochs=1, data={"dataset": "fashion_mnist", "root": str(tmp_path / "data"),
                                                   "val_fraction": 0.2, "batch_size": 16}))
    prepare_run_dir(tmp_path / "run", config)
    results = run_cohort(config, tmp_path / "run", SequentialCohort)
    saved = json.loads((tmp_path / "run" / RESULTS_FILE).read_text())
    assert saved["config"]["data"]["val_fraction"] == 0.2
    assert all(0.0 <= p["test_accuracy"] <= 1.0 for p in saved["peers"]) and "test_accuracy" in saved["ensemble"]
    counts = [p["test_accuracy"] * 20 for p in saved["peers"]]
    counts += [p["val_accuracy"] * 10 for p in results["history"][0]["peers"]]
    assert all(abs(count - round(count)) < 1e-5 for count in counts), counts  # 20 test images, 10 validation images


# -- the real files (the Debian package dataset-fashion-mnist) -----------------------------------

@pytest.fixture(scope="module")
def official():
    return load(None), load(None, seed=1, train_fraction=0.1, label_noise=0.2)


@needs_fashion_mnist
def test_the_real_files_hold_60000_and_10000_balanced_images(official):
    check(None)
    images, labels = fm.read_split(Path(fm.DEFAULT_ROOT), "train", None)
    assert images.shape == (60_000, 1, 28, 28) and torch.bincount(labels).tolist() == [6_000] * 10
    test_images, test_labels = fm.read_split(Path(fm.DEFAULT_ROOT), "test", None)
    assert test_images.shape == (10_000, 1, 28, 28) and torch.bincount(test_labels).tolist() == [1_000] * 10
    full, _ = official
    assert (full.info.train_size, full.info.val_size) == (55_000, 5_000)
    assert torch.bincount(full.train_labels()).tolist() == [5_500] * 10
    assert torch.bincount(all_of(full, "val")[1]).tolist() == [500] * 10
    assert torch.equal(all_of(full, "test")[1], test_labels)


@needs_fashion_mnist
def test_the_real_splits_are_disjoint_and_the_same_for_every_run_seed(official):
    full, reduced = official
    _, labels = fm.read_split(Path(fm.DEFAULT_ROOT), "train", None)
    kept, val = carve_validation(labels, fm.FashionMnist.default_val_fraction, "fashion_mnist")
    assert len(set(kept.tolist()) & set(val.tolist())) == 0 and len(kept) + len(val) == 60_000
    small = carve_validation(labels, 0.0167, "fashion_mnist")[1]  # fashion_offline.yaml's: inside the teacher's
    assert len(small) == 1_000 and set(small.tolist()) <= set(val.tolist())
    assert torch.equal(full.clean_train_labels, labels[kept])
    for split in ("val", "test"):
        assert all(torch.equal(a, b) for a, b in zip(all_of(full, split), all_of(reduced, split))), split
    assert reduced.info.train_size == 5_500 and torch.bincount(reduced.clean_train_labels).tolist() == [550] * 10
