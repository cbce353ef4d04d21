"""Transfer learning: reuse a network trained on one task (the source) for another (the target).

Lecture 6 reuses a small CNN that ``scripts/pretrain_transfer.py`` trained on five classes of
the generated CIFAR-sized data (circle, square, triangle, ring, cross) for the five other
classes (stripes, checkerboard, diagonal line, two blobs), given only a few labelled images:

    the network        TransferCNN (features + classifier), transfer_cnn
    the two tasks      SOURCE_CLASSES, TARGET_CLASSES, source_task, target_task
    the checkpoint     CHECKPOINT, CHECKPOINT_INFO, pretrain, save_checkpoint, load_pretrained
    reusing it         freeze, extract_features, train_linear_probe
    ImageNet weights   imagenet_weights_cached, load_imagenet_model (torchvision; optional)

Everything runs offline: the checkpoint (about 260 KB) is committed under ``checkpoints/``
next to a JSON file that records how it was made and what it scores.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from course_lib._validate import check_int
from course_lib.data import class_subset, make_loader, synthetic_cifar
from course_lib.train import evaluate, fit, seed_everything

__all__ = [
    "CHECKPOINT",
    "CHECKPOINT_INFO",
    "SOURCE_CLASSES",
    "TARGET_CLASSES",
    "TransferCNN",
    "cached_dir",
    "extract_features",
    "freeze",
    "imagenet_weights_cached",
    "load_imagenet_model",
    "load_pretrained",
    "pretrain",
    "save_checkpoint",
    "source_task",
    "target_task",
    "train_linear_probe",
    "transfer_cnn",
]

REPOSITORY = Path(__file__).resolve().parents[1]
CHECKPOINT = REPOSITORY / "checkpoints" / "transfer_cnn_shapes.pt"
CHECKPOINT_INFO = CHECKPOINT.with_suffix(".json")

# Indices into course_lib.data.SYNTHETIC_CLASSES.
SOURCE_CLASSES = (0, 1, 2, 3, 4)  # circle, square, triangle, ring, cross
TARGET_CLASSES = (5, 6, 7, 8, 9)  # horizontal/vertical stripes, checkerboard, diagonal, two blobs
SOURCE_SEED, TARGET_SEED = 1, 2  # generator seeds: the two tasks never share an image


# ----------------------------------------------------------------------------------------------
# The network
# ----------------------------------------------------------------------------------------------
class TransferCNN(nn.Module):
    """A LeNet-style CNN for ``(N, 3, 32, 32)`` images, in the two parts transfer learning needs.

    ``features`` is what we reuse, ``classifier`` what we replace::

        features    conv 5x5, 3 -> 16, ReLU, max pool 2     (N, 3, 32, 32) -> (N, 16, 14, 14)
                    conv 5x5, 16 -> 32, ReLU, max pool 2    -> (N, 32, 5, 5)
                    flatten                                 -> (N, 800)
        classifier  linear 800 -> 64, ReLU, linear 64 -> num_classes

    Output: logits ``(N, num_classes)``.
    """

    feature_dim = 32 * 5 * 5

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        check_int(num_classes, "num_classes", 1)
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
        )  # fmt: skip
        self.classifier = nn.Sequential(
            nn.Linear(self.feature_dim, 64), nn.ReLU(), nn.Linear(64, num_classes)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


def transfer_cnn(num_classes: int = 5, seed: int = 0) -> TransferCNN:
    """A freshly initialised :class:`TransferCNN`; the same ``seed`` gives the same weights."""
    seed_everything(seed)
    return TransferCNN(num_classes)


# ----------------------------------------------------------------------------------------------
# The two tasks
# ----------------------------------------------------------------------------------------------
def _split_per_class(dataset: TensorDataset, first: int) -> tuple[TensorDataset, TensorDataset]:
    """The first ``first`` examples of every class, and the rest (synthetic_cifar is shuffled)."""
    images, labels = dataset.tensors
    rank = torch.zeros_like(labels)
    for label in labels.unique():
        members = labels == label
        rank[members] = torch.arange(int(members.sum()))
    head = rank < first
    return TensorDataset(images[head], labels[head]), TensorDataset(images[~head], labels[~head])


def source_task(train_per_class: int = 1000, test_per_class: int = 100) -> tuple:
    """The pretraining task: ``SOURCE_CLASSES`` (labels 0..4), ``(train, test)`` TensorDatasets.

    Images ``(N, 3, 32, 32)`` in [0, 1] from ``synthetic_cifar(seed=SOURCE_SEED)``; the test
    part holds the first ``test_per_class`` images of each class.
    """
    check_int(train_per_class, "train_per_class", 1)
    check_int(test_per_class, "test_per_class", 1)
    data = synthetic_cifar(n_per_class=train_per_class + test_per_class, seed=SOURCE_SEED)
    test, train = _split_per_class(class_subset(data, SOURCE_CLASSES), test_per_class)
    return train, test


def target_task(pool_per_class: int = 100, test_per_class: int = 200) -> tuple:
    """The new task: ``TARGET_CLASSES`` (labels 0..4), ``(pool, test)`` TensorDatasets.

    Draw the few labelled training images from ``pool`` (``course_lib.data.few_per_class``);
    ``test`` measures the result. Generated with another seed than the source task.
    """
    check_int(pool_per_class, "pool_per_class", 1)
    check_int(test_per_class, "test_per_class", 1)
    data = synthetic_cifar(n_per_class=pool_per_class + test_per_class, seed=TARGET_SEED)
    pool, test = _split_per_class(class_subset(data, TARGET_CLASSES), pool_per_class)
    return pool, test


# ----------------------------------------------------------------------------------------------
# Pretraining and the checkpoint
# ----------------------------------------------------------------------------------------------
def pretrain(epochs: int = 8, lr: float = 1e-3, batch_size: int = 50, seed: int = 0):
    """Train :class:`TransferCNN` on the source task on the CPU; return ``(model, info)``.

    Adam, cross-entropy, ``epochs`` passes over 5,000 images in a seeded order. ``info`` holds
    the settings and the accuracy on the source task's test images.
    """
    train, test = source_task()
    model = transfer_cnn(num_classes=len(SOURCE_CLASSES), seed=seed)
    loader = make_loader(train, batch_size=batch_size, shuffle=True, seed=seed)
    test_loader = make_loader(test, batch_size=500)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    fit(model, loader, None, optimizer, epochs=epochs, device="cpu", progress=False)
    _, accuracy = evaluate(model, test_loader, nn.CrossEntropyLoss(), "cpu")
    info = {
        "architecture": "course_lib.transfer.TransferCNN(num_classes=5)",
        "source_classes": list(SOURCE_CLASSES),
        "data": f"course_lib.transfer.source_task(): synthetic_cifar(seed={SOURCE_SEED}), "
        f"{len(train)} training and {len(test)} test images",
        "training": f"Adam(lr={lr}), batch {batch_size}, {epochs} epochs, seed {seed}, CPU",
        "source_test_accuracy": round(accuracy, 4),
        "torch_version": torch.__version__,
    }
    return model, info


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_checkpoint(model: TransferCNN, info: dict, path: str | Path = CHECKPOINT) -> Path:
    """Write ``model.state_dict()`` to ``path`` and ``info`` (plus its SHA-256) next to it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    info = {**info, "file": path.name, "sha256": _sha256(path)}
    path.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")
    return path


def load_pretrained(path: str | Path = CHECKPOINT) -> tuple[TransferCNN, dict]:
    """The pretrained :class:`TransferCNN` (on the CPU, eval mode) and its JSON record.

    Raises FileNotFoundError when the checkpoint or its JSON is missing and ValueError when
    the file's SHA-256 differs from the recorded one (a truncated file or a Git LFS pointer).
    """
    path = Path(path)
    info_path = path.with_suffix(".json")
    for needed in (path, info_path):
        if not needed.is_file():
            raise FileNotFoundError(
                f"{needed} is missing; recreate it with `python scripts/pretrain_transfer.py`"
            )
    info = json.loads(info_path.read_text())
    if _sha256(path) != info["sha256"]:
        raise ValueError(
            f"{path} does not match the SHA-256 recorded in {info_path.name}: the file is "
            "damaged or not the committed one; recreate it with scripts/pretrain_transfer.py"
        )
    model = TransferCNN(num_classes=len(info["source_classes"]))
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval(), info


# ----------------------------------------------------------------------------------------------
# Reusing a network
# ----------------------------------------------------------------------------------------------
def freeze(module: nn.Module) -> nn.Module:
    """Switch off gradients for every parameter of ``module`` (returned, for chaining)."""
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module


def extract_features(
    features: nn.Module, images: Tensor, batch_size: int = 500, device: str | torch.device = "cpu"
) -> Tensor:
    """Run the frozen extractor once: ``images (N, ...)`` -> ``(N, feature_dim)`` on the CPU.

    Eval mode and no gradients; ``features`` is put back in the mode it was in.
    """
    if not isinstance(images, Tensor):
        raise TypeError(f"images must be a torch.Tensor (N, C, H, W); got {type(images).__name__}")
    check_int(batch_size, "batch_size", 1)
    was_training = features.training
    features.eval()
    outputs = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size].to(device)
            outputs.append(features(batch).flatten(1).cpu())
    features.train(was_training)
    return torch.cat(outputs)


def train_linear_probe(
    train_features: Tensor,
    train_labels: Tensor,
    num_classes: int,
    epochs: int = 100,
    lr: float = 1e-3,
    seed: int = 0,
) -> nn.Linear:
    """A linear classifier on fixed features: ``nn.Linear(feature_dim, num_classes)``, with Adam.

    ``train_features: (N, feature_dim)``, ``train_labels: (N,)``. Full batch (N is small
    here), so each epoch is one step. Same ``seed``, same initial weights.
    """
    if train_features.dim() != 2 or train_labels.shape != (train_features.shape[0],):
        raise ValueError(
            f"need train_features (N, feature_dim) and train_labels (N,); got "
            f"{tuple(train_features.shape)} and {tuple(train_labels.shape)}"
        )
    seed_everything(seed)
    probe = nn.Linear(train_features.shape[1], num_classes)
    dataset = TensorDataset(train_features, train_labels)
    loader = make_loader(dataset, batch_size=len(dataset))
    optimizer = torch.optim.Adam(probe.parameters(), lr=lr)
    fit(probe, loader, None, optimizer, epochs=epochs, device="cpu", progress=False)
    return probe


# ----------------------------------------------------------------------------------------------
# torchvision's ImageNet weights (only when cached or explicitly downloaded)
# ----------------------------------------------------------------------------------------------
def cached_dir() -> Path:
    """Where ``torch.hub`` keeps downloaded weights: ``$TORCH_HOME/hub/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _imagenet_weights(name: str):
    import torchvision

    return torchvision.models.get_model_weights(name).DEFAULT


def imagenet_weights_cached(name: str = "resnet18") -> Path | None:
    """The cached file of torchvision's default ImageNet weights for ``name``, or None.

    Looks in :func:`cached_dir`, where ``torch.hub`` downloads to; no network.
    """
    file = cached_dir() / Path(_imagenet_weights(name).url).name
    return file if file.is_file() else None


def load_imagenet_model(name: str = "resnet18", allow_download: bool = False):
    """``(model, message)``: torchvision's ImageNet-pretrained ``name``, or ``(None, why not)``.

    Uses the cached weights; downloads them only when ``allow_download`` is True. A failed
    download is reported in one line (the message), never raised, so a lecture can go on
    without it.
    """
    import torchvision

    weights = _imagenet_weights(name)
    cached = imagenet_weights_cached(name)
    if cached is None and not allow_download:
        return None, (
            f"the ImageNet weights of {name} are not cached in {cached_dir()} and downloading "
            "is off: skipped"
        )
    try:
        model = torchvision.models.get_model(name, weights=weights, progress=False)
    except Exception as error:  # noqa: BLE001 - offline, proxy, damaged file: report and go on
        return None, f"could not load the ImageNet weights of {name}: {type(error).__name__}"
    return model, f"loaded {name} with {weights} ({'cached' if cached else 'downloaded'})"
