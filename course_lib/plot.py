"""Figures for the lectures: image grids, feature maps, filters, training curves, optimizer paths.

Every function draws one new pyplot figure and returns its ``matplotlib.figure.Figure``;
none calls ``plt.show()``. In a notebook the figure appears by itself at the end of the cell;
write ``fig = show_images(...)`` (or ``_ = ...``) so the returned object is not shown a second
time, or end the cell with ``plt.show()``. matplotlib is imported inside the functions, so
``import course_lib.plot`` stays cheap.

    show_images          a grid of (N, 1|3, H, W) images
    show_feature_maps    the channels of one activation (C, H, W), each with its own scale
    show_filters         the filters (C_out, C_in, K_h, K_w) of a conv layer, own or shared scale
    show_sliding_windows where a conv / pooling window sits for chosen output cells (small grids)
    show_jpeg            display a photo-heavy figure as JPEG (small stored notebooks)
    plot_history         loss and accuracy per epoch for one or several training runs
    plot_trajectories    optimizer paths on the contours of a 2-D loss function
    plot_gradient_norms  gradient norm per layer, one line per model, log scale
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "plot_gradient_norms",
    "plot_history",
    "plot_trajectories",
    "show_feature_maps",
    "show_filters",
    "show_images",
    "show_jpeg",
    "show_sliding_windows",
]

_CELL_INCHES = 1.6  # width and height of one image in a grid


# ----------------------------------------------------------------------------------------------
# Image grids
# ----------------------------------------------------------------------------------------------


def _image_grid(count: int, ncols: int, suptitle: str | None) -> tuple[Figure, list[Axes]]:
    """A figure with ``count`` image axes in rows of ``ncols`` (unused cells removed)."""
    import matplotlib.pyplot as plt

    if count < 1:
        raise ValueError("nothing to show: got 0 images")
    ncols = max(1, min(ncols, count))
    nrows = math.ceil(count / ncols)
    extra = 0.4 if suptitle else 0.0
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(_CELL_INCHES * ncols, _CELL_INCHES * nrows + extra),
        squeeze=False,
        layout="constrained",
    )
    flat = list(axes.flat)
    for unused in flat[count:]:
        fig.delaxes(unused)
    for ax in flat[:count]:
        ax.set_xticks([])
        ax.set_yticks([])
    if suptitle:
        fig.suptitle(suptitle)
    return fig, flat[:count]


def _min_max(image: torch.Tensor) -> torch.Tensor:
    """Rescale to [0, 1]: ``(x - min) / (max - min)`` (a constant image becomes 0.5)."""
    low, high = image.min(), image.max()
    if high - low < 1e-12:
        return torch.full_like(image, 0.5)
    return (image - low) / (high - low)


def _as_image_list(images: torch.Tensor | Sequence) -> list[torch.Tensor]:
    """(N, C, H, W) tensor or list of (C, H, W) / (H, W) tensors -> list of (C, H, W) on CPU."""
    if isinstance(images, torch.Tensor):
        if images.dim() != 4:
            raise ValueError(
                f"images must be a 4-D tensor (N, C, H, W) or a list of (C, H, W) images; got "
                f"shape {tuple(images.shape)} (one image: x[None]; grayscale (N, H, W): x[:, None])"
            )
        images = list(images)
    result = []
    for image in images:
        image = torch.as_tensor(image).detach().cpu().float()
        image = image[None] if image.dim() == 2 else image
        if image.dim() != 3 or image.shape[0] not in (1, 3):
            raise ValueError(f"each image must be (1, H, W) or (3, H, W); got {tuple(image.shape)}")
        result.append(image)
    return result


def _draw_image(ax: Axes, image: torch.Tensor, normalize: bool) -> None:
    """Show a (C, H, W) image: per-image min-max if ``normalize``, else clipped to [0, 1]."""
    image = _min_max(image) if normalize else image.clamp(0.0, 1.0)
    if image.shape[0] == 1:
        ax.imshow(image[0].numpy(), cmap="gray", vmin=0.0, vmax=1.0)
    else:
        ax.imshow(image.permute(1, 2, 0).numpy())


def show_images(
    images: torch.Tensor | Sequence,
    titles: Sequence[str] | None = None,
    ncols: int = 8,
    suptitle: str | None = None,
    normalize: bool = False,
) -> Figure:
    """A grid of images ``(N, 1, H, W)`` (grayscale) or ``(N, 3, H, W)`` (RGB), or a list of them.

    Values are expected in [0, 1] and clipped to it (e.g. after augmentation). Standardized
    images (``normalize_transform``) or other ranges: ``normalize=True`` rescales each image
    by its own min and max, ``(x - min) / (max - min)``. ``titles``: one per image
    (e.g. class names).
    """
    image_list = _as_image_list(images)
    if titles is not None and len(titles) != len(image_list):
        raise ValueError(f"got {len(titles)} titles for {len(image_list)} images")
    fig, axes = _image_grid(len(image_list), ncols, suptitle)
    for index, (ax, image) in enumerate(zip(axes, image_list, strict=True)):
        _draw_image(ax, image, normalize)
        if titles is not None:
            ax.set_title(str(titles[index]), fontsize=9)
    return fig


def show_feature_maps(
    maps: torch.Tensor, ncols: int = 8, suptitle: str | None = None, cmap: str = "viridis"
) -> Figure:
    """Each channel of one activation ``maps: (C, H, W)`` (or ``(1, C, H, W)``) as an image.

    Every map gets its own colour scale (min to max of that channel), so weak channels stay
    visible; the title gives the channel index and its value range.
    """
    maps = torch.as_tensor(maps).detach().cpu().float()
    if maps.dim() == 4 and maps.shape[0] == 1:
        maps = maps[0]
    if maps.dim() != 3:
        raise ValueError(f"maps must be (C, H, W) or (1, C, H, W); got {tuple(maps.shape)}")
    fig, axes = _image_grid(maps.shape[0], ncols, suptitle or "feature maps (one scale per map)")
    for channel, (ax, feature_map) in enumerate(zip(axes, maps, strict=True)):
        ax.imshow(feature_map.numpy(), cmap=cmap)
        low, high = float(feature_map.min()), float(feature_map.max())
        ax.set_title(f"ch {channel}\n[{low:.2g}, {high:.2g}]", fontsize=8)
    return fig


def show_filters(
    weight: torch.Tensor,
    ncols: int = 8,
    suptitle: str | None = None,
    channel: int | None = None,
    scale: str = "each",
) -> Figure:
    """The filters of a conv layer, ``weight: (C_out, C_in, K_h, K_w)``, one image per filter.

    ``C_in = 3`` filters are drawn in colour (first-layer filters look at RGB), ``C_in = 1`` as
    one map; for other ``C_in`` the mean over input channels is drawn, or input ``channel``.

    ``scale="each"``: each filter is min-max normalized on its own, ``(w - min) / (max - min)``,
    so the pattern shows whatever its scale (mid-gray = that filter's middle value, not zero).
    ``scale="shared"``: one scale for all filters, symmetric about zero, so filters can be
    compared and the sign is visible: single maps use a diverging colour map (red > 0, white = 0,
    blue < 0) with a colour bar in weight units; RGB filters are drawn as
    ``0.5 + w / (2 max|w|)`` per channel (mid-gray = 0).
    """
    weight = torch.as_tensor(weight).detach().cpu().float()
    if weight.dim() != 4:
        raise ValueError(f"weight must be (C_out, C_in, K_h, K_w); got shape {tuple(weight.shape)}")
    if scale not in ("each", "shared"):
        raise ValueError(f"scale must be 'each' or 'shared'; got {scale!r}")
    if channel is not None:
        shown, what = weight[:, channel : channel + 1], f"input channel {channel}"
    elif weight.shape[1] in (1, 3):
        shown, what = weight, "RGB" if weight.shape[1] == 3 else "gray"
    else:
        shown, what = weight.mean(dim=1, keepdim=True), f"mean of {weight.shape[1]} channels"
    _, _, kh, kw = weight.shape
    how = (
        "each normalized"
        if scale == "each"
        else "one scale, 0 = " + ("mid-gray" if shown.shape[1] == 3 else "white")
    )
    default_title = f"{weight.shape[0]} filters {kh}x{kw} ({what}, {how})"
    fig, axes = _image_grid(shown.shape[0], ncols, suptitle or default_title)
    limit = max(float(shown.abs().max()), 1e-12)
    for index, (ax, kernel) in enumerate(zip(axes, shown, strict=True)):
        if scale == "each":
            _draw_image(ax, kernel, normalize=True)
        elif kernel.shape[0] == 3:
            ax.imshow((0.5 + kernel / (2 * limit)).permute(1, 2, 0).numpy())
        else:
            image = ax.imshow(kernel[0].numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title(f"filter {index}", fontsize=8)
    if scale == "shared" and shown.shape[1] == 1:
        fig.colorbar(image, ax=axes, label="weight", shrink=0.9, aspect=12)
    return fig


def _draw_number_grid(
    ax: Axes,
    values: torch.Tensor,
    left: float,
    window: tuple[int, int, int, int],
    border: int = 0,
    dilation: tuple[int, int] = (1, 1),
) -> None:
    """Draw ``values: (R, C)`` as squares with numbers from x = ``left``; outline ``window``.

    ``window = (top, left, K_h, K_w)`` in cells is outlined in red; with ``dilation = (D_h, D_w)``
    other than 1 each of its ``K_h * K_w`` taps (every ``D``-th cell) is outlined instead, and
    the area it spans, ``D (K - 1) + 1`` cells, is dashed. Cells within ``border`` of the edge
    (zero padding) are shaded grey.
    """
    from matplotlib.patches import Rectangle

    rows, cols = values.shape
    for r in range(rows):
        for c in range(cols):
            inside = border <= r < rows - border and border <= c < cols - border
            ax.add_patch(
                Rectangle(
                    (left + c, r),
                    1,
                    1,
                    facecolor="white" if inside else "0.85",
                    edgecolor="0.4",
                    linewidth=0.8,
                )
            )
            ax.text(
                left + c + 0.5,
                r + 0.5,
                f"{values[r, c].item():.3g}",
                ha="center",
                va="center",
                fontsize=9,
            )
    top, window_left, height, width = window
    if dilation == (1, 1):
        ax.add_patch(
            Rectangle(
                (left + window_left, top), width, height, fill=False, edgecolor="red", linewidth=2.5
            )
        )
        return
    dil_h, dil_w = dilation
    span_h, span_w = dil_h * (height - 1) + 1, dil_w * (width - 1) + 1
    ax.add_patch(
        Rectangle(
            (left + window_left, top),
            span_w,
            span_h,
            fill=False,
            edgecolor="red",
            linestyle="--",
            linewidth=1.2,
        )
    )
    for u in range(height):
        for v in range(width):
            ax.add_patch(
                Rectangle(
                    (left + window_left + v * dil_w, top + u * dil_h),
                    1,
                    1,
                    facecolor=(1.0, 0.0, 0.0, 0.15),
                    edgecolor="red",
                    linewidth=2.0,
                )
            )


def show_sliding_windows(
    x: torch.Tensor,
    out: torch.Tensor,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] = 1,
    padding: int = 0,
    positions: Sequence[tuple[int, int]] | None = None,
    ncols: int = 2,
    suptitle: str | None = None,
    dilation: int | tuple[int, int] = 1,
) -> Figure:
    """Where a convolution or pooling window sits for chosen output cells (teaching figure).

    One panel per output cell ``(i, j)``: the input grid ``x: (H, W)`` with ``padding`` rows
    and columns of zeros shaded grey around it and the window outlined in red, its top-left
    padded cell being ``(i*S, j*S)``; next to it the output grid ``out: (H_out, W_out)`` with
    cell ``(i, j)`` outlined. With ``dilation`` D > 1 the kernel's taps are every D-th cell:
    each tap is outlined and the ``D (K - 1) + 1`` cells they span are dashed. Every value is
    written in its square, so keep grids small (about 8 x 8 at most). ``out`` is whatever the
    operation produced (``corr2d``, ``max_pool2d``...); the figure does not recompute it.
    ``positions`` defaults to every output cell, at most 8.
    """
    import matplotlib.pyplot as plt

    from course_lib._validate import check_int, check_tensor, pair

    check_tensor(x, "x", 2, layout="(H, W)", floating=False)
    check_tensor(out, "out", 2, layout="(OH, OW)", floating=False)
    kernel_h, kernel_w = pair(kernel_size, "kernel_size", 1)
    stride_h, stride_w = pair(stride, "stride", 1)
    dil_h, dil_w = pair(dilation, "dilation", 1)
    span_h, span_w = dil_h * (kernel_h - 1) + 1, dil_w * (kernel_w - 1) + 1
    check_int(padding, "padding", 0)
    check_int(ncols, "ncols", 1)
    out_h, out_w = out.shape
    if positions is None:
        positions = [(i, j) for i in range(out_h) for j in range(out_w)][:8]
    if len(positions) == 0:
        raise ValueError("positions is empty; expected at least one output cell (i, j)")
    x_pad = torch.nn.functional.pad(x.detach().cpu().double(), (padding,) * 4)
    padded_h, padded_w = x_pad.shape
    for i, j in positions:
        if not (0 <= i < out_h and 0 <= j < out_w):
            raise ValueError(
                f"position {(i, j)} is outside the output grid of shape {(out_h, out_w)}"
            )
        if i * stride_h + span_h > padded_h or j * stride_w + span_w > padded_w:
            raise ValueError(
                f"the window of output cell {(i, j)} (kernel {(kernel_h, kernel_w)}, stride "
                f"{(stride_h, stride_w)}, dilation {(dil_h, dil_w)}) does not fit the padded "
                f"input {(padded_h, padded_w)}; check kernel_size, stride, padding and dilation"
            )
    gap = 1.5  # empty columns between the input grid and the output grid
    ncols = min(ncols, len(positions))
    nrows = math.ceil(len(positions) / ncols)
    total_w, total_h = padded_w + gap + out_w, max(padded_h, out_h)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(
            ncols * (0.42 * total_w + 0.3),
            nrows * (0.42 * total_h + 0.5) + (0.4 if suptitle else 0),
        ),
        squeeze=False,
        layout="constrained",
    )
    for ax in axes.flat[len(positions) :]:
        ax.remove()
    values_out = out.detach().cpu().double()
    for ax, (i, j) in zip(axes.flat[: len(positions)], positions, strict=True):
        _draw_number_grid(
            ax,
            x_pad,
            0,
            (i * stride_h, j * stride_w, kernel_h, kernel_w),
            padding,
            dilation=(dil_h, dil_w),
        )
        _draw_number_grid(ax, values_out, padded_w + gap, (i, j, 1, 1))
        ax.set_xlim(-0.1, total_w + 0.1)
        ax.set_ylim(total_h + 0.1, -0.1)  # row 0 at the top, like a matrix
        ax.set_aspect("equal")
        ax.axis("off")
        ax.set_title(f"output[{i}, {j}]", fontsize=10)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def show_jpeg(fig: Figure, quality: int = 80) -> None:
    """Display ``fig`` in the notebook as a JPEG image and close it (instead of ``plt.show()``).

    Figures full of photos are stored by the inline backend as PNG, which compresses natural
    images poorly (a grid of a dozen 256x256 photos is ~400 kB); JPEG at ``quality`` 80 is
    about 6 times smaller and looks the same. Use it for photo grids only: line plots and
    text stay sharper as PNG.
    """
    import io

    import matplotlib.pyplot as plt
    from IPython.display import Image, display

    from course_lib._validate import check_int

    check_int(quality, "quality", 1)
    if quality > 95:
        raise ValueError(f"quality must be in 1..95 (PIL's useful range); got {quality}")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="jpeg", bbox_inches="tight", pil_kwargs={"quality": quality})
    plt.close(fig)
    display(Image(data=buffer.getvalue(), format="jpeg"))


# ----------------------------------------------------------------------------------------------
# Training curves
# ----------------------------------------------------------------------------------------------

_METRIC_LABELS = {"loss": "loss", "acc": "accuracy"}


def _series(history: Any, key: str) -> list[float]:
    """``history.<key>`` or ``history[key]`` as a list of floats (empty when missing)."""
    if isinstance(history, Mapping):
        values = history.get(key, [])
    else:
        values = getattr(history, key, [])
    return [float(v) for v in (values or [])]


def _is_single_history(obj: Any) -> bool:
    if isinstance(obj, Mapping):
        return "train_loss" in obj
    return hasattr(obj, "train_loss")


def _best_epoch(history: Any) -> int | None:
    """``history.best_epoch`` or ``history["best_epoch"]`` (0-based), None when absent."""
    if isinstance(history, Mapping):
        return history.get("best_epoch")
    return getattr(history, "best_epoch", None)


def _best_epoch_positions(runs: Mapping[str, Any]) -> dict[str, float]:
    """x position of each run's best-epoch line: its epoch, spread a little when runs share it.

    Runs whose best epoch is the same would draw their dotted lines on top of each other, and
    only the last colour would show; the lines of k such runs are set 0.06 epochs apart,
    centred on the epoch.
    """
    best = {name: _best_epoch(h) for name, h in runs.items() if _best_epoch(h) is not None}
    positions = {}
    for name, epoch in best.items():
        sharing = [other for other, e in best.items() if e == epoch]
        offset = sharing.index(name) - (len(sharing) - 1) / 2
        positions[name] = epoch + 1 + 0.06 * offset
    return positions


def plot_history(
    histories: Any,
    metrics: Sequence[str] = ("loss", "acc"),
    title: str | None = None,
) -> Figure:
    """Training and validation curves per epoch, one panel per metric, side by side.

    ``histories``: one history or ``{"run name": history}``. A history is anything with
    ``train_<metric>`` / ``val_<metric>`` lists, as attributes (``course_lib.train.History``)
    or keys (a dict). Solid lines are training, dashed validation (skipped when empty), one
    colour per run; a dotted vertical line marks ``best_epoch`` (the epoch with the lowest
    validation loss, whose weights early stopping keeps) when the history has one, with its
    own legend entry. Epochs are numbered from 1.

    The training value of an epoch is the average over its batches, taken while the weights
    were still changing; the validation value is measured once, after the epoch. So after
    epoch 1, when the network improves fastest, validation loss can lie below training loss.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    runs = {"": histories} if _is_single_history(histories) else dict(histories)
    if not runs:
        raise ValueError("plot_history needs at least one history")
    fig, axes = plt.subplots(
        1, len(metrics), figsize=(5.0 * len(metrics), 3.8), squeeze=False, layout="constrained"
    )
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    best_x = _best_epoch_positions(runs)
    for ax, metric in zip(axes[0], metrics, strict=True):
        label = _METRIC_LABELS.get(metric, metric)
        for run_index, (name, history) in enumerate(runs.items()):
            colour = colours[run_index % len(colours)]
            prefix = f"{name} " if name else ""
            for split, style in (("train", "-"), ("val", "--")):
                values = _series(history, f"{split}_{metric}")
                if values:
                    epochs = range(1, len(values) + 1)
                    ax.plot(epochs, values, style, color=colour, label=f"{prefix}{split}")
            best = _best_epoch(history)
            if best is not None:
                ax.axvline(
                    best_x[name],
                    color=colour,
                    linestyle=":",
                    linewidth=1.2,
                    label=f"{prefix}best epoch ({best + 1}, lowest val loss)",
                )
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        longest = max((len(_series(h, f"train_{metric}")) for h in runs.values()), default=1)
        ax.set_xlim(0.7, max(longest, 1) + 0.3)  # a best-epoch line at the end stays visible
        ax.set_ylabel(label)
        ax.set_title(f"{label} per epoch")
    # One legend for all panels, below them: inside a panel it would hide the curves.
    entries: dict[str, Any] = {}
    for ax in axes[0]:
        for handle, text in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(text, handle)
    per_run = math.ceil(len(entries) / len(runs))
    fig.legend(
        list(entries.values()),
        list(entries),
        loc="outside lower center",
        ncols=len(runs) if len(runs) > 1 else per_run,  # multi-run: one column per run
        fontsize=8,
    )
    if title:
        fig.suptitle(title)
    return fig


# ----------------------------------------------------------------------------------------------
# Optimizer trajectories and gradient norms
# ----------------------------------------------------------------------------------------------


def _log_levels(values, count: int):
    """``count`` log-spaced contour levels from the smallest positive value to the largest."""
    import numpy as np

    positive = values[values > 0]
    high = float(values.max())
    if positive.size == 0 or high <= 0:
        raise ValueError("log-spaced contours need a loss with positive values in the window")
    low = max(float(positive.min()), high * 1e-8)
    return np.geomspace(low, high, count)


def plot_trajectories(
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    trajectories: Mapping[str, torch.Tensor],
    xlim: tuple[float, float],
    ylim: tuple[float, float],
    levels: int = 30,
    title: str | None = None,
    minimum: tuple[float, float] | None = None,
    resolution: int = 200,
) -> Figure:
    """Contours of a 2-D loss with one optimizer path per entry of ``trajectories``.

    ``loss_fn`` maps points ``p: (..., 2)`` to losses ``(...)`` (e.g.
    ``course_lib.optim.rosenbrock``); it is evaluated in float64 on a ``resolution`` x
    ``resolution`` grid over ``xlim`` x ``ylim``. Contour levels are log-spaced, so the narrow
    valleys near the minimum stay visible. ``trajectories``: ``{"Adam": path (T, 2)}``, e.g.
    from ``run_trajectory``; each path starts at a circle. The minimum (a star) is ``minimum``
    if given, else the lowest grid point.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm
    from matplotlib.ticker import LogLocator

    xs = torch.linspace(xlim[0], xlim[1], resolution, dtype=torch.float64)
    ys = torch.linspace(ylim[0], ylim[1], resolution, dtype=torch.float64)
    grid_x, grid_y = torch.meshgrid(xs, ys, indexing="xy")
    with torch.no_grad():
        losses = loss_fn(torch.stack([grid_x, grid_y], dim=-1)).double().numpy()
    contour_levels = _log_levels(losses, levels)

    fig, ax = plt.subplots(figsize=(6.5, 5.0), layout="constrained")
    filled = ax.contourf(
        grid_x.numpy(),
        grid_y.numpy(),
        losses,
        levels=contour_levels,
        norm=LogNorm(),
        cmap="Blues_r",
        extend="min",  # values below the lowest level (at the minimum) get the lowest colour
    )
    # Ticks at powers of ten (the default would label the odd geomspace level boundaries).
    fig.colorbar(filled, ax=ax, label="loss (log scale)", ticks=LogLocator())
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (name, path) in enumerate(trajectories.items()):
        points = torch.as_tensor(path).detach().cpu().double().numpy()
        colour = colours[index % len(colours)]
        ax.plot(points[:, 0], points[:, 1], "-", color=colour, linewidth=1.5, label=name)
        ax.plot(points[-1, 0], points[-1, 1], ".", color=colour, markersize=8)
        ax.plot(points[0, 0], points[0, 1], "o", color=colour, markersize=7, markeredgecolor="k")
    if minimum is None:
        row, col = divmod(int(losses.argmin()), losses.shape[1])
        minimum = (float(xs[col]), float(ys[row]))
    ax.plot(*minimum, "*", color="gold", markersize=15, markeredgecolor="k", label="minimum")
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_xlabel("x (parameter 1)")
    ax.set_ylabel("y (parameter 2)")
    ax.set_title(title or "optimizer paths on the loss contours (circles: start)")
    ax.legend(fontsize=8, loc="best")
    return fig


def plot_gradient_norms(
    norms: Mapping[str, Mapping[str, float]] | Mapping[str, float], title: str | None = None
) -> Figure:
    """Gradient L2 norm per layer, ``||dL/dW_l||_2``, one line per model, log y axis.

    ``norms``: ``{"plain 20": {layer: norm, ...}, "residual 20": {...}}`` as produced by
    ``course_lib.resnet.layer_gradient_norms`` (layers in forward order), or one such dict.
    The x axis is the layer index from the input (1) to the output; the layer names label
    the ticks when all models share them and there are at most 24.
    """
    import matplotlib.pyplot as plt

    values = list(norms.values())
    if values and not isinstance(values[0], Mapping):
        norms = {"model": norms}
    if not norms:
        raise ValueError("plot_gradient_norms needs at least one model's norms")
    fig, ax = plt.subplots(figsize=(7.0, 4.0), layout="constrained")
    layer_names = [list(per_layer) for per_layer in norms.values()]
    for name, per_layer in norms.items():
        layers = range(1, len(per_layer) + 1)
        ax.plot(layers, [float(v) for v in per_layer.values()], "o-", markersize=3, label=name)
    ax.set_yscale("log")
    first = layer_names[0]
    if all(names == first for names in layer_names) and len(first) <= 24:
        ax.set_xticks(range(1, len(first) + 1), first, rotation=60, ha="right", fontsize=7)
    ax.set_xlabel("layer (input -> output)")
    ax.set_ylabel("gradient L2 norm (log scale)")
    ax.set_title(title or "gradient norm per layer")
    ax.legend(fontsize=8)
    return fig
