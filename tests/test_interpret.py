"""course_lib.interpret: saliency, occlusion, Grad-CAM against hand computations and brute force."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib.interpret import (
    PHOTO_OBJECT_CLASSES,
    cached_pretrained_resnet18,
    grad_cam,
    mass_in_box,
    occlusion_map,
    photo_objects,
    pointing_game,
    saliency,
)


def _cam_net(stride: int = 1) -> nn.Sequential:
    """conv -> ReLU -> global average pooling -> linear: Grad-CAM at the ReLU is CAM / (h w)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 5, 3, stride=stride, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(5, 4),
    ).double()


def test_saliency_of_a_linear_model_is_its_weight() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 5, 6)).double()
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    maps = saliency(model, x, target=torch.tensor([1, 4]))
    for i, c in enumerate([1, 4]):
        expected = model[1].weight[c].reshape(3, 4, 5).abs().amax(dim=0)
        torch.testing.assert_close(maps[i], expected.detach())


def test_saliency_defaults_to_the_predicted_class() -> None:
    model = _cam_net()
    x = torch.randn(3, 3, 6, 6, dtype=torch.float64)
    predicted = model(x).argmax(dim=1)
    torch.testing.assert_close(saliency(model, x), saliency(model, x, predicted))


@pytest.mark.parametrize("stride", [1, 2])
def test_grad_cam_equals_class_activation_map_by_hand(stride: int) -> None:
    model = _cam_net(stride)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    target = torch.tensor([3, 0])
    cam = grad_cam(model, model[1], x, target)
    with torch.no_grad():
        features = model[1](model[0](x))  # (N, K, h, w)
        h, w = features.shape[-2:]
        weights = model[4].weight[target]  # (N, K): w_{t,k}
        by_hand = torch.relu((weights[:, :, None, None] * features).sum(dim=1)) / (h * w)
        by_hand = F.interpolate(
            by_hand[:, None], size=(8, 8), mode="bilinear", align_corners=False
        )[:, 0]
    torch.testing.assert_close(cam, by_hand)
    assert cam.shape == (2, 8, 8) and not cam.requires_grad


def test_grad_cam_leaves_no_hook_and_no_parameter_grad() -> None:
    model = _cam_net()
    grad_cam(model, model[1], torch.randn(1, 3, 6, 6, dtype=torch.float64))
    assert not model[1]._forward_hooks
    assert all(p.grad is None for p in model.parameters())


def _occlusion_brute_force(model, x, target, patch, stride, fill):
    n, _, height, width = x.shape
    total = torch.zeros(n, height, width, dtype=x.dtype)
    count = torch.zeros(height, width, dtype=x.dtype)
    with torch.no_grad():
        base = model(x).softmax(dim=1)
        for top in range(0, height - patch + 1, stride):
            for left in range(0, width - patch + 1, stride):
                hidden = x.clone()
                hidden[:, :, top : top + patch, left : left + patch] = fill
                probs = model(hidden).softmax(dim=1)
                for i in range(n):
                    drop = base[i, target[i]] - probs[i, target[i]]
                    total[i, top : top + patch, left : left + patch] += drop
                count[top : top + patch, left : left + patch] += 1
    return torch.where(count > 0, total / count.clamp(min=1), torch.zeros_like(total))


@pytest.mark.parametrize(("patch", "stride"), [(4, 2), (3, 3), (5, 4)])
def test_occlusion_equals_a_brute_force_loop(patch: int, stride: int) -> None:
    model = _cam_net()
    x = torch.rand(3, 3, 11, 10, dtype=torch.float64)
    target = torch.tensor([0, 2, 1])
    fast = occlusion_map(model, x, target, patch=patch, stride=stride, fill=0.3, batch_size=7)
    torch.testing.assert_close(fast, _occlusion_brute_force(model, x, target, patch, stride, 0.3))


def test_pointing_game_and_mass_in_box() -> None:
    maps = torch.zeros(3, 6, 6)
    maps[0, 2, 3] = 5.0  # inside box 0
    maps[1, 5, 5] = 1.0  # outside box 1 (bottom/right exclusive)
    maps[2] = 1.0  # flat map: first maximum at (0, 0), mass = area share
    boxes = torch.tensor([[1, 1, 4, 4], [0, 0, 5, 5], [0, 0, 3, 2]])
    assert pointing_game(maps, boxes).tolist() == [True, False, True]
    torch.testing.assert_close(mass_in_box(maps, boxes), torch.tensor([1.0, 0.0, 6 / 36]))
    with pytest.raises(ValueError, match="boxes must be"):
        pointing_game(maps, boxes[:2])


def test_photo_objects_boxes_hold_the_object() -> None:
    images, labels, boxes = photo_objects(40, seed=3)
    assert images.shape == (40, 3, 48, 48) and images.dtype == torch.float32
    assert 0 <= images.min() and images.max() <= 1
    assert set(labels.tolist()) <= set(range(len(PHOTO_OBJECT_CLASSES)))
    sides = boxes[:, 2] - boxes[:, 0]
    assert torch.equal(sides, boxes[:, 3] - boxes[:, 1])
    assert sides.min() >= 14 and sides.max() <= 21
    assert boxes[:, :2].min() >= 0 and boxes[:, 2:].max() <= 48
    again, _, _ = photo_objects(40, seed=3)
    assert torch.equal(images, again)
    assert not torch.equal(images, photo_objects(40, seed=4)[0])


def test_the_evidence_is_in_the_box() -> None:
    # each box holds its class's thumbnail (maybe flipped), scaled by a brightness factor
    from course_lib.interpret import _sources

    images, labels, boxes = photo_objects(30, seed=0)
    thumbnails = _sources(48)["objects"]
    for i in range(30):
        top, left, bottom, right = boxes[i].tolist()
        crop = images[i, :, top:bottom, left:right].flatten()
        for label in range(len(PHOTO_OBJECT_CLASSES)):
            source = thumbnails[label][bottom - top]
            best = max(
                torch.corrcoef(torch.stack([crop, candidate.flatten()]))[0, 1].item()
                for candidate in (source, source.flip(-1))
            )
            if label == labels[i]:
                assert best > 0.97, (i, best)
            else:
                assert best < 0.97, (i, label, best)


def test_cached_pretrained_resnet18_never_downloads(tmp_path, monkeypatch) -> None:
    torchvision = pytest.importorskip("torchvision")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    assert cached_pretrained_resnet18() is None
    assert not any(tmp_path.iterdir())  # nothing was fetched or created
    # a checkpoint on disk (here random weights under the real file name) is loaded
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    (tmp_path / "checkpoints").mkdir()
    reference = torchvision.models.resnet18()
    torch.save(reference.state_dict(), tmp_path / "checkpoints" / weights.url.rsplit("/", 1)[1])
    model = cached_pretrained_resnet18()
    assert model is not None and not model.training
    torch.testing.assert_close(model.fc.weight, reference.fc.weight)


def test_explanations_agree_on_every_device(device) -> None:
    model = _cam_net()
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    target = torch.tensor([1, 2])
    on_device = model.to(device)
    for method in (
        lambda m, images: saliency(m, images, target),
        lambda m, images: grad_cam(m, m[1], images, target),
        lambda m, images: occlusion_map(m, images, target, patch=4, stride=2),
    ):
        result = method(on_device, x.to(device))
        assert result.device.type == torch.device(device).type
        torch.testing.assert_close(result.cpu(), method(model.cpu(), x))
        on_device = model.to(device)
    boxes = torch.tensor([[0, 0, 4, 4], [2, 2, 8, 8]])
    maps = torch.rand(2, 8, 8, dtype=torch.float64)
    assert (
        pointing_game(maps.to(device), boxes).cpu().tolist() == pointing_game(maps, boxes).tolist()
    )
