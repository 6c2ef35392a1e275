"""Datasets: shared batch order, seeded augmentation, training-set reductions, on-disk formats, errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from codistill.data import build_dataset, dataset_names
from codistill.data.augment import Augmentation
from codistill.data.base import batch_sizes
from codistill.data.cifar import MEAN_STD
from codistill.data.imagefolder import random_resized_box
from codistill.data.noise import stratified_subset, symmetric_noise
from codistill.data.splits import carve_validation
from codistill.errors import ConfigError


def make_digits(train_fraction: float = 1.0, label_noise: float = 0.0, seed: int = 0):
    return build_dataset("digits", root=None, train_fraction=train_fraction, label_noise=label_noise, seed=seed)


@pytest.fixture(scope="module")
def digits():
    return make_digits()


# ---------------------------------------------------------------------------------------------
# digits and the shared batch order


def test_digits_shapes_split_and_normalization(digits) -> None:
    info = digits.info
    assert (info.num_classes, info.in_channels, info.image_size) == (10, 1, 8)
    assert (info.train_size, info.val_size) == (1347, 450)
    images, labels = digits.train_batch(torch.arange(info.train_size), torch.Generator(), augment=False)
    assert images.shape == (1347, 1, 8, 8) and images.dtype == torch.float32
    assert abs(images.mean().item()) < 0.1 and abs(images.std().item() - 1.0) < 0.1
    assert set(labels.tolist()) == set(range(10))
    val = list(digits.val_batches(200))
    assert [len(batch_labels) for _, batch_labels in val] == [200, 200, 50]
    assert val[0][0].shape == (200, 1, 8, 8)


def test_digits_validation_split_is_the_same_for_every_seed(digits) -> None:
    other = make_digits(train_fraction=0.5, label_noise=0.3, seed=7)
    for (images, labels), (other_images, other_labels) in zip(digits.val_batches(512), other.val_batches(512)):
        assert torch.equal(images, other_images) and torch.equal(labels, other_labels)


def test_a_last_batch_of_one_example_joins_the_one_before() -> None:
    """BatchNorm cannot train on one example: 337 examples in batches of 16 are 20 of 16 and one of 17."""
    assert batch_sizes(337, 16) == [16] * 20 + [17]
    assert batch_sizes(336, 16) == [16] * 21 and batch_sizes(338, 16) == [16] * 21 + [2]
    assert batch_sizes(17, 16) == [17] and batch_sizes(5, 16) == [5]
    subset = make_digits(train_fraction=0.25)
    assert subset.info.train_size == 337
    batches = subset.batch_indices(seed=0, epoch=0, batch_size=16)
    assert len(batches) == subset.steps_per_epoch(16) == 21 and len(batches[-1]) == 17
    assert torch.equal(torch.cat(batches).sort().values, torch.arange(337))


def test_batch_order_is_shared_per_epoch_and_covers_every_index_once(digits) -> None:
    batches = digits.batch_indices(seed=3, epoch=0, batch_size=64)
    assert len(batches) == digits.steps_per_epoch(64) == 22
    assert all(len(batch) == 64 for batch in batches[:-1]) and len(batches[-1]) == 1347 - 21 * 64
    assert torch.equal(torch.cat(batches).sort().values, torch.arange(1347))
    again = digits.batch_indices(seed=3, epoch=0, batch_size=64)
    assert all(torch.equal(first, second) for first, second in zip(batches, again))
    assert not torch.equal(torch.cat(batches), torch.cat(digits.batch_indices(seed=3, epoch=1, batch_size=64)))
    assert not torch.equal(torch.cat(batches), torch.cat(digits.batch_indices(seed=4, epoch=0, batch_size=64)))


# ---------------------------------------------------------------------------------------------
# augmentation


def test_augmentation_is_a_pure_function_of_its_generator(digits) -> None:
    indices = digits.batch_indices(seed=0, epoch=0, batch_size=64)[0]

    def view(stream: int) -> torch.Tensor:
        return digits.train_batch(indices, digits.augmentation_generator(0, 0, 0, stream), augment=True)[0]

    assert torch.equal(view(0), view(0))
    assert not torch.equal(view(0), view(1))
    plain = digits.train_batch(indices, torch.Generator(), augment=False)[0]
    assert not torch.equal(view(0), plain)


def test_random_crop_takes_a_window_of_the_zero_padded_image() -> None:
    images = torch.arange(1, 8 * 8 + 1, dtype=torch.float32).view(1, 1, 8, 8).repeat(16, 1, 1, 1)
    augmentation = Augmentation(mean=(0.0,), std=(1.0,), padding=1, flip=False)
    cropped = augmentation.random(images, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(images[0], [1, 1, 1, 1])
    windows = {(top, left): padded[:, top:top + 8, left:left + 8] for top in range(3) for left in range(3)}
    offsets = [next(key for key, window in windows.items() if torch.equal(window, image)) for image in cropped]
    assert len(set(offsets)) > 3  # each image gets its own offset


def test_flip_is_a_parameter_and_mirrors_whole_images() -> None:
    images = torch.rand(32, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    generator = torch.Generator().manual_seed(2)
    flipped = Augmentation(mean=(0.0,) * 3, std=(1.0,) * 3, padding=0, flip=True).random(images, generator)
    mirrored = [torch.equal(out, image.flip(2)) for out, image in zip(flipped, images)]
    kept = [torch.equal(out, image) for out, image in zip(flipped, images)]
    assert all(m or k for m, k in zip(mirrored, kept)) and any(mirrored) and any(kept)
    unflipped = Augmentation(mean=(0.0,) * 3, std=(1.0,) * 3, padding=0, flip=False).random(images, generator)
    assert torch.equal(unflipped, images)


# ---------------------------------------------------------------------------------------------
# training-set reductions


def test_symmetric_noise_flips_exactly_the_requested_share_to_other_classes() -> None:
    labels = torch.arange(1000) % 10
    noisy = symmetric_noise(labels, 0.37, 10, seed=5)
    changed = noisy != labels
    assert changed.sum().item() == 370
    assert set(noisy[changed].tolist()) == set(range(10))
    assert torch.equal(noisy, symmetric_noise(labels, 0.37, 10, seed=5))
    assert not torch.equal(noisy, symmetric_noise(labels, 0.37, 10, seed=6))
    assert torch.equal(symmetric_noise(labels, 0.0, 10, seed=5), labels)


def test_dataset_label_noise_touches_training_labels_only(digits) -> None:
    noisy = make_digits(label_noise=0.2, seed=1)
    assert torch.equal(noisy.clean_train_labels, digits.train_labels())
    flipped = noisy.train_labels() != noisy.clean_train_labels
    assert flipped.sum().item() == round(0.2 * 1347)
    _, batch_labels = noisy.train_batch(torch.arange(1347), torch.Generator(), augment=False)
    assert torch.equal(batch_labels, noisy.train_labels())
    noisy_val, clean_val = ([labels for _, labels in dataset.val_batches(512)] for dataset in (noisy, digits))
    assert all(torch.equal(first, second) for first, second in zip(noisy_val, clean_val))
    assert torch.equal(make_digits(label_noise=0.2, seed=1).train_labels(), noisy.train_labels())


def test_label_noise_keeps_the_subset_so_a_clean_run_sees_the_same_examples() -> None:
    """What the clean teacher of jobs/evidence_policy.py's pool relies on: the same
    ``train_fraction`` and seed without noise give the same examples with their true labels."""
    noisy, clean = make_digits(0.5, 0.4, seed=2), make_digits(0.5, 0.0, seed=2)
    assert torch.equal(noisy.train_images, clean.train_images)
    assert torch.equal(clean.train_labels(), noisy.clean_train_labels)
    assert not torch.equal(noisy.train_labels(), noisy.clean_train_labels)


def test_train_fraction_keeps_a_seeded_stratified_subset() -> None:
    labels = torch.cat([torch.full((count,), label) for label, count in enumerate([100, 40, 7])])
    subset = stratified_subset(labels, 0.25, seed=0)
    assert torch.bincount(labels[subset]).tolist() == [25, 10, 2]
    assert torch.equal(subset, stratified_subset(labels, 0.25, seed=0))
    assert not torch.equal(subset, stratified_subset(labels, 0.25, seed=1))
    reduced = make_digits(train_fraction=0.25)
    full_counts = torch.bincount(make_digits().train_labels(), minlength=10)
    expected = [round(0.25 * count) for count in full_counts.tolist()]
    assert torch.bincount(reduced.train_labels(), minlength=10).tolist() == expected
    assert reduced.info.train_size == sum(expected) and reduced.info.val_size == 450


# ---------------------------------------------------------------------------------------------
# CIFAR's on-disk format


def write_pickle(path: Path, content: dict) -> None:
    with path.open("wb") as handle:
        pickle.dump(content, handle)


def cifar_batch(rng: np.random.Generator, count: int, num_classes: int, label_key: str) -> dict:
    """Random images whose labels cycle through the classes (from a random class on)."""
    labels = ((np.arange(count) + rng.integers(num_classes)) % num_classes).tolist()
    batch = {"batch_label": "fixture", "data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
             label_key: labels, "filenames": [f"{i}.png" for i in range(count)]}
    if label_key == "fine_labels":
        batch["coarse_labels"] = [label // 5 for label in batch[label_key]]
    return batch


def write_cifar10(root: Path, rng: np.random.Generator) -> dict[str, dict]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    files = {f"data_batch_{i}": cifar_batch(rng, 10, 10, "labels") for i in range(1, 6)}
    files["test_batch"] = cifar_batch(rng, 3, 10, "labels")
    for name, content in files.items():
        write_pickle(folder / name, content)
    write_pickle(folder / "batches.meta", {"label_names": [f"class{i}" for i in range(10)], "num_vis": 3072})
    return files


def write_cifar100(root: Path, rng: np.random.Generator) -> dict[str, dict]:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    files = {"train": cifar_batch(rng, 300, 100, "fine_labels"), "test": cifar_batch(rng, 4, 100, "fine_labels")}
    for name, content in files.items():
        write_pickle(folder / name, content)
    write_pickle(folder / "meta", {"fine_label_names": [f"fine{i}" for i in range(100)],
                                   "coarse_label_names": [f"coarse{i}" for i in range(20)]})
    return files


def unnormalize(images: torch.Tensor, name: str) -> torch.Tensor:
    mean, std = (torch.tensor(values).view(1, 3, 1, 1) for values in MEAN_STD[name])
    return (images * std + mean) * 255.0


@pytest.mark.parametrize("name, writer, train_files, test_file, label_key, num_classes", [
    ("cifar10", write_cifar10, [f"data_batch_{i}" for i in range(1, 6)], "test_batch", "labels", 10),
    ("cifar100", write_cifar100, ["train"], "test", "fine_labels", 100),
])
def test_cifar_reads_the_python_batches(tmp_path: Path, name, writer, train_files, test_file, label_key,
                                        num_classes) -> None:
    """Validation is the stratified val_fraction of the training batches (fixed split seed), the
    test split the official test batch."""
    files = writer(tmp_path, np.random.default_rng(0))
    dataset = build_dataset(name, root=str(tmp_path), train_fraction=1.0, label_noise=0.0, seed=0, val_fraction=0.3)
    train_data = np.concatenate([files[file]["data"] for file in train_files]).reshape(-1, 3, 32, 32)
    train_labels = torch.tensor(sum((files[file][label_key] for file in train_files), []))
    kept, val = carve_validation(train_labels, 0.3, name)
    assert (dataset.info.num_classes, dataset.info.in_channels, dataset.info.image_size) == (num_classes, 3, 32)
    assert (dataset.info.train_size, dataset.info.val_size) == (len(kept), len(val))
    assert len(kept) + len(val) == len(train_labels)

    # The subset keeps file order (sorted indices), so index i is the i-th kept image of the batch files.
    images, labels = dataset.train_batch(torch.arange(len(kept)), torch.Generator(), augment=False)
    assert images.shape == (len(kept), 3, 32, 32)
    assert torch.equal(labels, train_labels[kept])
    torch.testing.assert_close(unnormalize(images, name), torch.from_numpy(train_data[kept.numpy()]).float(),
                               atol=1e-3, rtol=0)

    augmented, _ = dataset.train_batch(torch.arange(4), torch.Generator().manual_seed(0), augment=True)
    assert augmented.shape == (4, 3, 32, 32) and not torch.equal(augmented, images[:4])

    [(val_images, val_labels)] = list(dataset.val_batches(512))
    assert torch.equal(val_labels, train_labels[val]) and (torch.bincount(val_labels, minlength=num_classes) > 0).all()
    torch.testing.assert_close(unnormalize(val_images, name), torch.from_numpy(train_data[val.numpy()]).float(),
                               atol=1e-3, rtol=0)
    [(test_images, test_labels)] = list(dataset.eval_batches(64, "test"))
    assert test_labels.tolist() == files[test_file][label_key]
    expected_test = torch.from_numpy(files[test_file]["data"].reshape(-1, 3, 32, 32)).float()
    torch.testing.assert_close(unnormalize(test_images, name), expected_test, atol=1e-3, rtol=0)


def test_cifar_and_fashion_mnist_hold_5000_training_images_out_by_default(tmp_path: Path) -> None:
    from codistill.registry import DATASETS

    train_sizes = {"cifar10": 50_000, "cifar100": 50_000, "fashion_mnist": 60_000}
    assert {name: round(DATASETS.get(name).default_val_fraction * total) for name, total in train_sizes.items()} == {
        "cifar10": 5000, "cifar100": 5000, "fashion_mnist": 5000}
    write_cifar10(tmp_path, np.random.default_rng(0))
    assert build_dataset("cifar10", root=str(tmp_path), train_fraction=1.0, label_noise=0.0, seed=0).info.val_size == 10


def test_cifar_names_the_missing_files(tmp_path: Path) -> None:
    write_cifar10(tmp_path, np.random.default_rng(0))
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(ConfigError, match="data_batch_3") as error:
        build_dataset("cifar10", root=str(tmp_path), train_fraction=1.0, label_noise=0.0, seed=0)
    assert error.value.field == "data.root"
    with pytest.raises(ConfigError, match="cifar-100-python") as error:
        build_dataset("cifar100", root=str(tmp_path), train_fraction=1.0, label_noise=0.0, seed=0)
    assert error.value.field == "data.root"
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(ConfigError, match="not CIFAR python batches") as error:
        build_dataset("cifar10", root=str(tmp_path), train_fraction=1.0, label_noise=0.0, seed=0)
    assert error.value.field == "data.root"


class _Touch:
    """Unpickling this creates a file: a crafted "batch" that would run code."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return Path.touch, (self.target,)


def test_cifar_batches_never_run_code(tmp_path: Path) -> None:
    write_cifar10(tmp_path, np.random.default_rng(0))
    write_pickle(tmp_path / "cifar-10-batches-py" / "data_batch_2", {"data": _Touch(tmp_path / "pwned")})
    with pytest.raises(ConfigError, match="not allowed") as error:
        build_dataset("cifar10", root=str(tmp_path), train_fraction=1.0, label_noise=0.0, seed=0)
    assert error.value.field == "data.root" and not (tmp_path / "pwned").exists()


# ---------------------------------------------------------------------------------------------
# image folders


def write_image_tree(root: Path, splits: dict[str, dict[str, list[tuple[int, int]]]]) -> None:
    """PNG files of the given (width, height), each a solid colour that encodes its class."""
    for split, classes in splits.items():
        for class_index, (class_name, sizes) in enumerate(sorted(classes.items())):
            (root / split / class_name).mkdir(parents=True)
            for file_index, size in enumerate(sizes):
                colour = (200 * class_index + 20, 40, 90)
                Image.new("RGB", size, colour).save(root / split / class_name / f"{file_index}.png")


TREE = {"train": {"cat": [(40, 30), (20, 50), (33, 33)], "dog": [(64, 48), (30, 30), (25, 60)]},
        "val": {"cat": [(50, 40)], "dog": [(36, 36)]}}


def test_imagefolder_reads_a_class_tree(tmp_path: Path) -> None:
    write_image_tree(tmp_path, TREE)
    dataset = build_dataset("imagefolder", root=str(tmp_path), train_fraction=1.0, label_noise=0.0, seed=0,
                            image_size=16)
    assert (dataset.info.num_classes, dataset.info.in_channels, dataset.info.image_size) == (2, 3, 16)
    assert (dataset.info.train_size, dataset.info.val_size) == (6, 2)
    assert dataset.train_labels().tolist() == [0, 0, 0, 1, 1, 1]

    indices = torch.tensor([4, 0, 2])
    images, labels = dataset.train_batch(indices, dataset.augmentation_generator(0, 0, 0, 0), augment=True)
    assert images.shape == (3, 3, 16, 16) and labels.tolist() == [1, 0, 0]
    red = images[:, 0].mean(dim=(1, 2))
    assert red[0] > 1.0 > red[1]  # the dog colour has far more red than the cat colour
    again, _ = dataset.train_batch(indices, dataset.augmentation_generator(0, 0, 0, 0), augment=True)
    assert torch.equal(images, again)

    [(val_images, val_labels)] = list(dataset.val_batches(8))
    assert val_images.shape == (2, 3, 16, 16) and val_labels.tolist() == [0, 1]


def test_imagefolder_crops_depend_on_the_stream(tmp_path: Path) -> None:
    gradient = np.tile(np.arange(64, dtype=np.uint8)[None, :, None] * 4, (48, 1, 3))
    for split in ("train", "val"):
        (tmp_path / split / "only").mkdir(parents=True)
        Image.fromarray(gradient).save(tmp_path / split / "only" / "0.png")
    dataset = build_dataset("imagefolder", root=str(tmp_path), train_fraction=1.0, label_noise=0.0, seed=0)
    assert dataset.info.image_size == 32

    def view(stream: int) -> torch.Tensor:
        return dataset.train_batch(torch.tensor([0]), dataset.augmentation_generator(0, 0, 0, stream), True)[0]

    assert torch.equal(view(1), view(1)) and not torch.equal(view(1), view(2))
    plain = dataset.train_batch(torch.tensor([0]), torch.Generator(), augment=False)[0]
    [(val_images, _)] = list(dataset.val_batches(4))
    assert torch.equal(plain, val_images)


def test_random_resized_box_stays_inside_the_image() -> None:
    generator = torch.Generator().manual_seed(0)
    for height, width in [(30, 40), (50, 20), (1, 100), (7, 7)]:
        for _ in range(20):
            top, left, crop_h, crop_w = random_resized_box(height, width, generator)
            assert 0 <= top and top + crop_h <= height and crop_h > 0
            assert 0 <= left and left + crop_w <= width and crop_w > 0


def test_imagefolder_requires_matching_class_folders(tmp_path: Path) -> None:
    write_image_tree(tmp_path, {"train": TREE["train"], "val": {"cat": [(20, 20)], "bird": [(20, 20)]}})
    with pytest.raises(ConfigError, match="same class folders") as error:
        build_dataset("imagefolder", root=str(tmp_path), train_fraction=1.0, label_noise=0.0, seed=0)
    assert error.value.field == "data.root"


# ---------------------------------------------------------------------------------------------
# configuration errors


@pytest.mark.parametrize("changes, field", [
    ({"name": "mnist"}, "data.dataset"),
    ({"train_fraction": 0.0}, "data.train_fraction"),
    ({"train_fraction": 1.5}, "data.train_fraction"),
    ({"label_noise": 1.0}, "data.label_noise"),
    ({"label_noise": -0.1}, "data.label_noise"),
    ({"root": "/nonexistent/codistill-data"}, "data.root"),
    ({"name": "cifar10"}, "data.root"),
    ({"name": "cifar100"}, "data.root"),
    ({"name": "imagefolder"}, "data.root"),
    ({"image_size": 32}, "data.image_size"),
    ({"val_fraction": 0.1}, "data.val_fraction"),
    ({"name": "imagefolder", "val_fraction": 0.1}, "data.val_fraction"),
    ({"name": "cifar10", "val_fraction": 0.0}, "data.val_fraction"),
    ({"name": "fashion_mnist", "val_fraction": 0.6}, "data.val_fraction"),
    ({"name": "cifar100", "test_fraction": 0.5}, "data.test_fraction"),
    ({"name": "fashion_mnist", "test_fraction": 0.5}, "data.test_fraction"),
])
def test_invalid_settings_name_their_field(changes: dict, field: str) -> None:
    settings = {"name": "digits", "root": None, "train_fraction": 1.0, "label_noise": 0.0, "seed": 0} | changes
    name = settings.pop("name")
    with pytest.raises(ConfigError) as error:
        build_dataset(name, **settings)
    assert error.value.field == field


def test_missing_directories_say_what_is_expected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cifar-10-batches-py") as error:
        build_dataset("cifar10", root=str(tmp_path), train_fraction=1.0, label_noise=0.0, seed=0)
    assert error.value.field == "data.root"
    with pytest.raises(ConfigError, match="train/<class>") as error:
        build_dataset("imagefolder", root=str(tmp_path), train_fraction=1.0, label_noise=0.0, seed=0)
    assert error.value.field == "data.root"
    assert dataset_names() == ["cifar10", "cifar100", "digits", "fashion_mnist", "imagefolder"]
