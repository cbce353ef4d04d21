"""course_lib.transfer and the committed checkpoint of lecture 6's transfer-learning demo.

The checkpoint must load, match its recorded SHA-256 and score the accuracy its JSON states;
the pretraining script must reproduce that accuracy; nothing here may touch the network.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from torch import nn

from course_lib import transfer
from course_lib.data import SYNTHETIC_CLASSES, make_loader
from course_lib.train import evaluate

ROOT = transfer.REPOSITORY


def _source_accuracy(model: nn.Module) -> float:
    _, test = transfer.source_task()
    return evaluate(model, make_loader(test, batch_size=500), nn.CrossEntropyLoss(), "cpu")[1]


def test_committed_checkpoint_is_small_and_documented():
    assert transfer.CHECKPOINT.parent == ROOT / "checkpoints"
    assert transfer.CHECKPOINT.stat().st_size < 400_000, "keep the checkpoint a few hundred KB"
    info = json.loads(transfer.CHECKPOINT_INFO.read_text())
    assert info["command"].startswith("python scripts/pretrain_transfer.py")
    assert (ROOT / "scripts" / "pretrain_transfer.py").is_file()
    assert info["source_classes"] == list(transfer.SOURCE_CLASSES)


def test_checkpoint_loads_and_scores_its_stated_accuracy():
    model, info = transfer.load_pretrained()
    assert isinstance(model, transfer.TransferCNN) and not model.training
    measured = _source_accuracy(model)
    # 500 test images: one image is 0.002; allow a flipped borderline image on another CPU.
    assert abs(measured - info["source_test_accuracy"]) <= 0.004, (measured, info)
    assert measured > 0.9  # the source task is learned: the demo reuses real features


def test_damaged_checkpoint_is_refused(tmp_path):
    copy = tmp_path / transfer.CHECKPOINT.name
    copy.write_bytes(transfer.CHECKPOINT.read_bytes()[:-10])
    (tmp_path / transfer.CHECKPOINT_INFO.name).write_text(transfer.CHECKPOINT_INFO.read_text())
    with pytest.raises(ValueError, match="SHA-256"):
        transfer.load_pretrained(copy)
    with pytest.raises(FileNotFoundError, match="pretrain_transfer.py"):
        transfer.load_pretrained(tmp_path / "missing.pt")


@pytest.mark.slow
def test_script_reproduces_the_checkpoint(tmp_path):
    """Rerun the committed command into a temporary folder (about a minute on one core)."""
    result = subprocess.run(
        [sys.executable, "scripts/pretrain_transfer.py", "--output-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    assert "wrote" in result.stdout
    rebuilt = json.loads((tmp_path / transfer.CHECKPOINT_INFO.name).read_text())
    committed = json.loads(transfer.CHECKPOINT_INFO.read_text())
    assert abs(rebuilt["source_test_accuracy"] - committed["source_test_accuracy"]) <= 0.01
    model, _ = transfer.load_pretrained(tmp_path / transfer.CHECKPOINT.name)  # SHA-256 checked
    reference, _ = transfer.load_pretrained()
    assert model.state_dict().keys() == reference.state_dict().keys()
    # Bit-for-bit equality holds with the same PyTorch build on the same kind of CPU (checked by
    # hand when the checkpoint was made); across machines rounding may differ, so not asserted.


def test_tasks_split_the_classes_and_never_share_images():
    train, test = transfer.source_task(train_per_class=20, test_per_class=5)
    pool, target_test = transfer.target_task(pool_per_class=4, test_per_class=6)
    assert len(train) == 100 and len(test) == 25 and len(pool) == 20 and len(target_test) == 30
    for dataset in (train, test, pool, target_test):
        images, labels = dataset.tensors
        assert images.shape[1:] == (3, 32, 32) and labels.unique().tolist() == [0, 1, 2, 3, 4]
    assert set(transfer.SOURCE_CLASSES).isdisjoint(transfer.TARGET_CLASSES)
    assert SYNTHETIC_CLASSES[transfer.TARGET_CLASSES[0]] == "horizontal stripes"
    flat = train.tensors[0].flatten(1)
    assert not any(torch.equal(image, other) for image in pool.tensors[0][:5] for other in flat)


def test_features_probe_and_freeze():
    torch.manual_seed(0)
    model = transfer.transfer_cnn(num_classes=5, seed=0)
    assert torch.equal(
        model.features[0].weight, transfer.transfer_cnn(seed=0).features[0].weight
    ), "the same seed must give the same initial weights"
    images = torch.rand(7, 3, 32, 32)
    features = transfer.extract_features(model.features, images, batch_size=3)
    assert features.shape == (7, transfer.TransferCNN.feature_dim)
    assert model.features.training  # extract_features restores the mode
    labels = torch.tensor([0, 1, 2, 3, 4, 0, 1])
    probe = transfer.train_linear_probe(features, labels, num_classes=5, epochs=200, lr=1e-2)
    assert (probe(features).argmax(1) == labels).all(), "7 points in 800-D are separable"
    frozen = transfer.freeze(model.features)
    assert not any(p.requires_grad for p in frozen.parameters())
    assert all(p.requires_grad for p in model.classifier.parameters())
    with pytest.raises(ValueError, match=r"\(N, feature_dim\) and train_labels \(N,\)"):
        transfer.train_linear_probe(features, labels[:3], num_classes=5)


def test_imagenet_weights_are_never_downloaded_unless_asked(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def no_network(*args, **kwargs):  # pragma: no cover - called only on failure
        raise AssertionError("load_imagenet_model tried to download")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    assert transfer.imagenet_weights_cached("resnet18") is None
    model, message = transfer.load_imagenet_model("resnet18", allow_download=False)
    assert model is None and "not cached" in message and "skipped" in message


def test_failed_download_is_one_line_not_an_exception(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    model, message = transfer.load_imagenet_model("resnet18", allow_download=True)
    assert model is None and message.endswith("OSError")
