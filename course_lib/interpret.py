"""What a CNN looks at: saliency maps, occlusion and Grad-CAM (lecture 07).

Each method turns a classifier and an image into a map ``(H, W)`` of how much each pixel (or
region) matters for one class score ``y_c`` (the logit of the target class ``c``):

    saliency     |d y_c / d x| at every pixel, max over colour channels
                 (Simonyan, Vedaldi and Zisserman, 2014)
    occlusion    p_c(x) - p_c(x with a grey square over the pixel), averaged over the squares
                 that cover it: what the prediction loses without that region
                 (Zeiler and Fergus, 2014)
    Grad-CAM     relu(sum_k alpha_k A^k), alpha_k = mean_{i,j} d y_c / d A^k_ij, for the
                 feature maps A (C, h, w) of a late conv layer, upsampled to (H, W)
                 (Selvaraju et al., 2017)

To check a map we need to know where the evidence is. ``photo_objects`` makes such a task from
scikit-image's photos (no download): one of four photo thumbnails pasted at a random place on
a texture, with a distractor patch elsewhere; ``pointing_game`` and ``mass_in_box`` measure
whether a map points at the pasted object.

    explanations   saliency, occlusion_map, grad_cam
    checking them  photo_objects, PHOTO_OBJECT_CLASSES, pointing_game, mass_in_box
    showing them   show_explanations
    pretrained     cached_pretrained_resnet18 (only when the weights are already on disk)
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from course_lib._validate import check_int, check_tensor

__all__ = [
    "PHOTO_OBJECT_CLASSES",
    "cached_pretrained_resnet18",
    "grad_cam",
    "mass_in_box",
    "occlusion_map",
    "photo_objects",
    "pointing_game",
    "saliency",
    "show_explanations",
]


# ----------------------------------------------------------------------------------------------
# the three explanations
# ----------------------------------------------------------------------------------------------


def _targets(logits: torch.Tensor, target: torch.Tensor | int | None) -> torch.Tensor:
    """The class index per image: the prediction when ``target`` is None, else ``target``."""
    n = logits.shape[0]
    if target is None:
        return logits.argmax(dim=1)
    if isinstance(target, int):
        return torch.full((n,), target, dtype=torch.long, device=logits.device)
    target = torch.as_tensor(target, device=logits.device).long()
    if target.shape != (n,):
        raise ValueError(
            f"target must be an int or a tensor of shape ({n},); got {tuple(target.shape)}"
        )
    return target


def saliency(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor | int | None = None
) -> torch.Tensor:
    """Vanilla gradient saliency ``max_c |d y_t / d x_c|``: ``(N, C, H, W)`` -> ``(N, H, W)``.

    ``y_t`` is the logit of the target class (default: the predicted class) of each image. Put
    the model in eval mode first (batch norm in training mode would mix the images).
    """
    check_tensor(x, "x", 4)
    x = x.detach().clone().requires_grad_(True)
    logits = model(x)
    scores = logits.gather(1, _targets(logits, target)[:, None])
    (grad,) = torch.autograd.grad(scores.sum(), x)
    return grad.abs().amax(dim=1)


def _patch_masks(
    height: int, width: int, patch: int, stride: int, like: torch.Tensor
) -> torch.Tensor:
    """``(P, H, W)``: one 0/1 mask per position of a ``patch x patch`` square (step ``stride``)."""
    tops = range(0, height - patch + 1, stride)
    lefts = range(0, width - patch + 1, stride)
    masks = like.new_zeros(len(tops) * len(lefts), height, width)
    for index, (top, left) in enumerate((t, l) for t in tops for l in lefts):
        masks[index, top : top + patch, left : left + patch] = 1.0
    return masks


@torch.no_grad()
def occlusion_map(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor | int | None = None,
    patch: int = 8,
    stride: int = 4,
    fill: float = 0.5,
    batch_size: int = 512,
) -> torch.Tensor:
    """Drop in the target probability when a grey square hides each region: ``(N, H, W)``.

    For every position ``q`` of a ``patch x patch`` square (moved by ``stride``), the image is
    copied with the square set to ``fill`` and ``drop_q = p_t(x) - p_t(x occluded at q)`` is
    recorded (``p_t``: softmax probability of the target class, default the predicted class).
    Each pixel gets the mean drop of the squares covering it (0 where none does). Positive:
    hiding the region hurts the prediction. Costs ``N * P`` forward passes, ``P`` positions.
    """
    check_tensor(x, "x", 4)
    check_int(patch, "patch", 1)
    check_int(stride, "stride", 1)
    n, channels, height, width = x.shape
    if patch > min(height, width):
        raise ValueError(f"patch ({patch}) must fit in the {height}x{width} image")
    logits = model(x)
    targets = _targets(logits, target)
    base = logits.softmax(dim=1).gather(1, targets[:, None])  # (N, 1)
    masks = _patch_masks(height, width, patch, stride, x)  # (P, H, W)
    drops = x.new_empty(n, masks.shape[0])
    for i in range(n):
        occluded = x[i] * (1 - masks[:, None]) + fill * masks[:, None]  # (P, C, H, W)
        probs = torch.cat([model(chunk).softmax(dim=1) for chunk in occluded.split(batch_size)])
        drops[i] = base[i] - probs[:, targets[i]]
    coverage = masks.sum(dim=0)
    summed = torch.einsum("np,phw->nhw", drops, masks)
    return torch.where(coverage > 0, summed / coverage.clamp(min=1), torch.zeros_like(summed))


def grad_cam(
    model: nn.Module, layer: nn.Module, x: torch.Tensor, target: torch.Tensor | int | None = None
) -> torch.Tensor:
    """Grad-CAM at ``layer`` (a module whose output is ``(N, C, h, w)``): ``(N, H, W)``.

    A forward hook keeps the layer's output ``A``; ``d y_t / d A`` comes from autograd. Then
    ``alpha_k = mean_{i,j} d y_t / d A^k_ij`` (one weight per channel),
    ``cam = relu(sum_k alpha_k A^k)`` ``(N, h, w)``, upsampled bilinearly to the input's
    ``(H, W)``. For a net that ends in ``conv -> global average pooling -> linear`` and
    ``layer`` = the last conv block, ``alpha_k = w_{t,k} / (h w)``: Grad-CAM is then the class
    activation map (CAM) of Zhou et al. (2016) divided by ``h w``.
    """
    check_tensor(x, "x", 4)
    captured: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _module, _inputs, output: captured.append(output))
    try:
        logits = model(x)
    finally:
        handle.remove()
    if len(captured) != 1 or captured[0].dim() != 4:
        raise ValueError(
            "layer must run exactly once in model(x) and output (N, C, h, w) feature maps"
        )
    activations = captured[0]
    scores = logits.gather(1, _targets(logits, target)[:, None])
    (grads,) = torch.autograd.grad(scores.sum(), activations)
    alpha = grads.mean(dim=(2, 3), keepdim=True)  # (N, C, 1, 1)
    cam = torch.relu((alpha * activations).sum(dim=1, keepdim=True))  # (N, 1, h, w)
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return cam[:, 0].detach()


# ----------------------------------------------------------------------------------------------
# checking a map against a known object location
# ----------------------------------------------------------------------------------------------


def _check_boxes(maps: torch.Tensor, boxes: torch.Tensor) -> None:
    check_tensor(maps, "maps", 3, "(N, H, W)")
    if not isinstance(boxes, torch.Tensor) or boxes.shape != (maps.shape[0], 4):
        raise ValueError(
            f"boxes must be a tensor ({maps.shape[0]}, 4) of (top, left, bottom, right)"
        )


def pointing_game(maps: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """``(N,)`` bool: does each map's maximum lie inside its box ``(top, left, bottom, right)``?

    Bottom and right are exclusive (the box is ``image[top:bottom, left:right]``). Zhang et al.
    (2016) call the hit rate over a data set the *pointing game*.
    """
    _check_boxes(maps, boxes)
    n, _, width = maps.shape
    flat = maps.reshape(n, -1).argmax(dim=1)
    rows, cols = flat // width, flat % width
    top, left, bottom, right = boxes.to(maps.device).unbind(dim=1)
    return (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)


def mass_in_box(maps: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """``(N,)``: fraction of each map's positive mass ``sum(relu(map))`` inside its box.

    A map that ignores the object scores about the box's share of the image area.
    """
    _check_boxes(maps, boxes)
    positive = maps.clamp(min=0)
    inside = torch.zeros_like(positive)
    for i, (top, left, bottom, right) in enumerate(boxes.tolist()):
        inside[i, top:bottom, left:right] = 1.0
    total = positive.sum(dim=(1, 2))
    return (positive * inside).sum(dim=(1, 2)) / total.clamp(min=torch.finfo(maps.dtype).tiny)


# ----------------------------------------------------------------------------------------------
# a task whose explanations can be checked: photo thumbnails on textures
# ----------------------------------------------------------------------------------------------

PHOTO_OBJECT_CLASSES = ("cat", "astronaut", "coffee", "camera man")
# (photo in skimage.data, crop top, left, bottom, right) of each object, square crops
_OBJECT_CROPS = {
    "cat": ("chelsea", 0, 80, 300, 380),
    "astronaut": ("astronaut", 20, 130, 260, 370),
    "coffee": ("coffee", 20, 110, 380, 470),
    "camera man": ("camera", 40, 150, 360, 470),
}
_TEXTURES = ("grass", "gravel", "brick")
_DISTRACTORS = ("hubble_deep_field", "immunohistochemistry", "retina", "colorwheel", "coins")
_OBJECT_SIZES = range(14, 22)  # side of a pasted object, pixels (for size=48)
_DISTRACTOR_SIZES = range(12, 20)


def _photo(name: str) -> torch.Tensor:
    """A skimage photo as float (3, H, W) in [0, 1] (gray photos repeated to 3 channels)."""
    from course_lib.data import sample_photos

    return sample_photos((name,), gray_to_rgb=True)[name]


def _resize(image: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(
        image[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )[0].clamp(0, 1)


def _square(image: torch.Tensor) -> torch.Tensor:
    _, height, width = image.shape
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return image[:, top : top + side, left : left + side]


@functools.lru_cache(maxsize=4)
def _sources(size: int) -> dict[str, list]:
    """Thumbnails of every object at every size, texture and distractor images (computed once)."""
    scale = size / 48
    objects = []
    for name in PHOTO_OBJECT_CLASSES:
        photo, top, left, bottom, right = _OBJECT_CROPS[name]
        crop = _photo(photo)[:, top:bottom, left:right]
        objects.append({s: _resize(crop, round(s * scale)) for s in _OBJECT_SIZES})
    textures = [_resize(_photo(name), 2 * size) for name in _TEXTURES]
    distractors = [_resize(_square(_photo(name)), size) for name in _DISTRACTORS]
    return {"objects": objects, "textures": textures, "distractors": distractors}


def _randint(low: int, high: int, generator: torch.Generator) -> int:
    """A random int in ``[low, high)``."""
    return int(torch.randint(low, high, (1,), generator=generator))


def _apart(a: tuple[int, int, int], b: tuple[int, int, int]) -> bool:
    """Do the squares (top, left, side) ``a`` and ``b`` not overlap?"""
    return a[0] + a[2] <= b[0] or b[0] + b[2] <= a[0] or a[1] + a[2] <= b[1] or b[1] + b[2] <= a[1]


def photo_objects(
    n: int, size: int = 48, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` images with a known object location: ``(images (n,3,S,S), labels (n,), boxes (n,4))``.

    Each image: a tinted crop of a texture photo (grass, gravel or brick), a *distractor*
    square cut from another photo (Hubble deep field, a tissue stain, a retina, a colour wheel,
    coins) and one *object*: a thumbnail (14-21 px at ``size=48``) of the cat (``chelsea``), the
    astronaut, the coffee cup or the camera man, randomly flipped and brightened, never
    overlapping the distractor. ``labels`` index :data:`PHOTO_OBJECT_CLASSES`; ``boxes`` hold
    the object's ``(top, left, bottom, right)`` (bottom/right exclusive). The background and the
    distractor carry no information about the class: the evidence is inside the box.
    Deterministic for a given ``seed``; all photos ship with scikit-image.
    """
    check_int(n, "n", 1)
    check_int(size, "size", 32)
    sources = _sources(size)
    generator = torch.Generator().manual_seed(seed)
    images = torch.empty(n, 3, size, size)
    labels = torch.randint(0, len(PHOTO_OBJECT_CLASSES), (n,), generator=generator)
    boxes = torch.empty(n, 4, dtype=torch.long)
    for i in range(n):
        texture = sources["textures"][_randint(0, len(_TEXTURES), generator)]
        top, left = _randint(0, size + 1, generator), _randint(0, size + 1, generator)
        tint = 0.3 + 0.7 * torch.rand(3, 1, 1, generator=generator)
        image = texture[:, top : top + size, left : left + size] * tint
        source = sources["distractors"][_randint(0, len(_DISTRACTORS), generator)]
        d_side = round(
            _randint(_DISTRACTOR_SIZES.start, _DISTRACTOR_SIZES.stop, generator) * size / 48
        )
        thumbnails = sources["objects"][int(labels[i])]
        thumbnail = thumbnails[_randint(_OBJECT_SIZES.start, _OBJECT_SIZES.stop, generator)]
        if torch.rand(1, generator=generator) < 0.5:
            thumbnail = thumbnail.flip(-1)
        thumbnail = (thumbnail * (0.7 + 0.6 * torch.rand(1, generator=generator))).clamp(0, 1)
        side = thumbnail.shape[-1]
        while True:  # draw both places until the squares do not overlap (a few tries on average)
            d_top, d_left = (
                _randint(0, size - d_side + 1, generator),
                _randint(0, size - d_side + 1, generator),
            )
            o_top, o_left = (
                _randint(0, size - side + 1, generator),
                _randint(0, size - side + 1, generator),
            )
            if _apart((o_top, o_left, side), (d_top, d_left, d_side)):
                break
        s_top, s_left = (
            _randint(0, size - d_side + 1, generator),
            _randint(0, size - d_side + 1, generator),
        )
        image[:, d_top : d_top + d_side, d_left : d_left + d_side] = source[
            :, s_top : s_top + d_side, s_left : s_left + d_side
        ]
        image[:, o_top : o_top + side, o_left : o_left + side] = thumbnail
        images[i] = image
        boxes[i] = torch.tensor([o_top, o_left, o_top + side, o_left + side])
    return images, labels, boxes


# ----------------------------------------------------------------------------------------------
# figures and a pretrained network
# ----------------------------------------------------------------------------------------------


def show_explanations(
    images: torch.Tensor,
    maps: dict[str, torch.Tensor],
    titles: Sequence[str] | None = None,
    boxes: torch.Tensor | None = None,
    suptitle: str | None = None,
):
    """One row per image: the image, then each map over a greyed copy of it, with a colour bar.

    ``images``: ``(N, 3, H, W)`` in [0, 1]; ``maps``: ``{method name: (N, H, W)}``. Each map is
    divided by its own maximum (the methods have different units), so the colour bar reads
    "relative importance" from 0 to 1; negative values (occlusion that *helped*) show as 0.
    ``boxes`` ``(N, 4)`` draws the true object box in every panel. Returns the Figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    check_tensor(images, "images", 4, "(N, 3, H, W)")
    n = images.shape[0]
    columns = 1 + len(maps)
    fig, axes = plt.subplots(n, columns, figsize=(2.1 * columns + 0.6, 2.1 * n), squeeze=False)
    for i in range(n):
        picture = images[i].permute(1, 2, 0).clamp(0, 1).cpu()
        grey = picture.mean(dim=2)
        axes[i, 0].imshow(picture)
        axes[i, 0].set_title(titles[i] if titles is not None else "image", fontsize=9)
        for j, (name, method_maps) in enumerate(maps.items(), start=1):
            m = method_maps[i].detach().cpu().clamp(min=0)
            m = m / m.max() if m.max() > 0 else m
            axes[i, j].imshow(grey, cmap="gray", vmin=0, vmax=1)
            shown = axes[i, j].imshow(m, cmap="inferno", alpha=0.65, vmin=0, vmax=1)
            axes[i, j].set_title(name, fontsize=9)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
            if boxes is not None:
                top, left, bottom, right = boxes[i].tolist()
                ax.add_patch(
                    Rectangle(
                        (left - 0.5, top - 0.5),
                        right - left,
                        bottom - top,
                        fill=False,
                        edgecolor="cyan",
                        lw=1.2,
                    )
                )
    if maps:
        fig.colorbar(
            shown,
            ax=axes,
            fraction=0.025,
            pad=0.02,
            label="relative importance (map / its maximum)",
        )
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def cached_pretrained_resnet18() -> nn.Module | None:
    """torchvision's ImageNet ResNet-18 in eval mode if its weights are already on disk, else None.

    Looks for the checkpoint file in ``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME``) and
    never downloads: offline notebooks take the other path. The ImageNet class names are in
    ``torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]``.
    """
    from torchvision.models import ResNet18_Weights, resnet18

    weights = ResNet18_Weights.IMAGENET1K_V1
    checkpoint = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if not checkpoint.is_file():
        return None
    model = resnet18()
    model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
    return model.eval()
