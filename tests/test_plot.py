"""course_lib.plot: every function returns a Figure with the expected axes, titles and labels."""

from __future__ import annotations

import subprocess
import sys
import warnings
from dataclasses import dataclass, field

import matplotlib
import pytest
import torch

matplotlib.use("Agg", force=True)

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from course_lib import plot  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@dataclass
class _History:  # duck-typed stand-in for course_lib.train.History
    train_loss: list = field(default_factory=list)
    train_acc: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    val_acc: list = field(default_factory=list)
    best_epoch: int | None = None


def _titles(fig: Figure) -> list[str]:
    return [ax.get_title() for ax in fig.axes]


def test_importing_plot_does_not_load_matplotlib():
    code = "import sys, course_lib.plot\nprint('matplotlib' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("channels", [1, 3])
def test_show_images_grid_and_titles(channels):
    images = torch.rand(10, channels, 12, 12)
    names = [f"image {i}" for i in range(10)]
    fig = plot.show_images(images, titles=names, ncols=4, suptitle="ten images")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 10  # 3 rows of 4, the two unused cells removed
    assert _titles(fig) == names
    assert fig.get_suptitle() == "ten images"
    shown = fig.axes[0].images[0].get_array()
    assert shown.shape == ((12, 12) if channels == 1 else (12, 12, 3))


def test_show_images_clips_or_normalizes_without_warnings():
    images = torch.randn(3, 3, 8, 8) * 3  # far outside [0, 1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # imshow would warn "Clipping input data"
        clipped = plot.show_images(images)
        normalized = plot.show_images(images, normalize=True)
    data = clipped.axes[0].images[0].get_array()
    assert data.min() >= 0 and data.max() <= 1
    data = normalized.axes[1].images[0].get_array()
    assert data.min() == pytest.approx(0) and data.max() == pytest.approx(1)


def test_show_images_accepts_lists_and_rejects_bad_shapes():
    fig = plot.show_images([torch.rand(3, 10, 12), torch.rand(20, 20)])
    assert len(fig.axes) == 2
    with pytest.raises(ValueError, match=r"x\[None\]"):
        plot.show_images(torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="titles"):
        plot.show_images(torch.rand(2, 1, 4, 4), titles=["only one"])


def test_show_feature_maps():
    fig = plot.show_feature_maps(torch.randn(1, 6, 9, 9), ncols=3)
    assert len(fig.axes) == 6
    assert fig.axes[5].get_title().startswith("ch 5")
    assert fig.get_suptitle()


def test_show_filters_rgb_gray_and_many_channels():
    rgb = plot.show_filters(torch.randn(16, 3, 5, 5))
    assert len(rgb.axes) == 16 and _titles(rgb)[0] == "filter 0"
    assert "5x5" in rgb.get_suptitle() and "RGB" in rgb.get_suptitle()
    pixels = rgb.axes[0].images[0].get_array()
    assert pixels.shape == (5, 5, 3)
    assert pixels.min() == pytest.approx(0) and pixels.max() == pytest.approx(1)  # per filter
    many = plot.show_filters(torch.randn(4, 16, 3, 3))
    assert "mean of 16 channels" in many.get_suptitle()
    one = plot.show_filters(torch.randn(4, 16, 3, 3), channel=2, suptitle="conv2, input 2")
    assert one.get_suptitle() == "conv2, input 2"


def test_show_filters_shared_scale_shows_sign_and_size():
    weight = torch.zeros(6, 1, 5, 5)
    weight[0, 0, 2, 2], weight[1, 0, 0, 0] = 0.5, -0.25  # filters 2..5 are all zero
    fig = plot.show_filters(weight, ncols=6, scale="shared")
    assert len(fig.axes) == 6 + 1  # six filters and one colour bar
    assert fig.axes[-1].get_ylabel() == "weight"
    for ax in fig.axes[:6]:
        assert ax.images[0].get_clim() == (-0.5, 0.5)  # symmetric, shared by every filter
    assert "one scale" in fig.get_suptitle()
    rgb = plot.show_filters(torch.zeros(2, 3, 3, 3), scale="shared")
    assert len(rgb.axes) == 2  # no colour bar for colour images
    assert float(abs(rgb.axes[0].images[0].get_array() - 0.5).max()) < 1e-6  # zero: mid-gray
    with pytest.raises(ValueError, match="scale"):
        plot.show_filters(weight, scale="global")


def test_plot_history_one_and_several_runs():
    history = _History([2.0, 1.5, 1.2], [0.3, 0.5, 0.6], [2.1, 1.7, 1.6], [0.3, 0.45, 0.5], 2)
    fig = plot.plot_history(history)
    assert len(fig.axes) == 2
    assert _titles(fig) == ["loss per epoch", "accuracy per epoch"]
    assert [ax.get_xlabel() for ax in fig.axes] == ["epoch", "epoch"]
    loss_ax = fig.axes[0]
    assert len(loss_ax.get_lines()) == 3  # train, val, best-epoch marker
    assert list(loss_ax.get_lines()[0].get_xdata()) == [1, 2, 3]
    fig.canvas.draw()
    ticks = [t for t in loss_ax.get_xticks() if 1 <= t <= 3]
    assert ticks and all(float(t).is_integer() for t in ticks), f"epoch ticks {ticks}"

    assert loss_ax.get_lines()[2].get_linestyle() == ":"
    assert list(loss_ax.get_lines()[2].get_xdata()) == [3, 3]  # best_epoch 2 is epoch 3
    legend = [t.get_text() for t in fig.legends[0].get_texts()]  # one legend, under the panels
    assert legend == ["train", "val", "best epoch (3, lowest val loss)"]
    assert loss_ax.get_legend() is None
    assert loss_ax.get_xlim()[1] > 3  # the best-epoch line at the last epoch is not on the frame

    no_val = {"train_loss": [1.0, 0.5], "train_acc": [0.5, 0.7]}  # a plain dict works too
    runs = plot.plot_history({"SGD": history, "Adam": no_val}, metrics=("loss",), title="cmp")
    assert len(runs.axes) == 1 and runs.get_suptitle() == "cmp"
    labels = [line.get_label() for line in runs.axes[0].get_lines()]
    assert {"SGD train", "SGD val", "Adam train", "SGD best epoch (3, lowest val loss)"} <= set(
        labels
    )
    legend = [t.get_text() for t in runs.legends[0].get_texts()]
    assert legend == ["SGD train", "SGD val", "SGD best epoch (3, lowest val loss)", "Adam train"]
    with_best = {"train_loss": [1.0, 0.5], "val_loss": [0.9, 0.8], "best_epoch": 1}
    lines = plot.plot_history(with_best, metrics=("loss",)).axes[0].get_lines()
    assert [line.get_label() for line in lines][-1] == "best epoch (2, lowest val loss)"


def test_plot_history_best_epoch_lines_of_runs_that_share_it_stay_visible():
    shared = {"train_loss": [1.0, 0.5, 0.4], "val_loss": [0.9, 0.8, 0.7], "best_epoch": 2}
    own = {**shared, "best_epoch": 0}
    fig = plot.plot_history({"a": shared, "b": shared, "c": shared, "d": own}, metrics=("loss",))
    best = {
        line.get_label().split()[0]: (line.get_xdata()[0], line.get_color())
        for line in fig.axes[0].get_lines()
        if "best epoch" in line.get_label()
    }
    xs = sorted(best[name][0] for name in "abc")
    assert xs[0] < xs[1] < xs[2] and xs[1] == pytest.approx(3)  # centred on epoch 3, spread
    assert xs[2] - xs[0] < 0.5  # still read as epoch 3
    assert len({best[name][1] for name in "abc"}) == 3  # each in its run's colour
    assert best["d"][0] == 1  # a run alone at its epoch is not moved


def test_plot_trajectories():
    def bowl(p):
        return 0.5 * (p[..., 0] ** 2 + 10 * p[..., 1] ** 2)

    paths = {
        "SGD": torch.tensor([[-2.0, 1.0], [-1.0, 0.2], [-0.5, 0.0]]),
        "Adam": torch.tensor([[-2.0, 1.0], [-1.5, 0.5]]),
    }
    fig = plot.plot_trajectories(bowl, paths, xlim=(-3, 3), ylim=(-2, 2), levels=15, title="bowl")
    main = fig.axes[0]
    assert len(fig.axes) == 2  # the plot and its colour bar
    assert main.get_title() == "bowl"
    assert main.get_xlabel() and main.get_ylabel()
    labels = [line.get_label() for line in main.get_lines()]
    assert "SGD" in labels and "Adam" in labels and "minimum" in labels
    star = next(line for line in main.get_lines() if line.get_label() == "minimum")
    assert abs(star.get_xdata()[0]) < 0.05 and abs(star.get_ydata()[0]) < 0.05
    levels = fig.axes[0].collections[0].levels
    ratios = levels[1:] / levels[:-1]
    assert len(levels) == 15 and ratios == pytest.approx(ratios[0])  # log-spaced


def test_plot_gradient_norms():
    names = [f"layers.{i}.conv" for i in range(6)]
    plain = dict(zip(names, [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0], strict=True))
    residual = dict(zip(names, [0.5, 0.6, 0.6, 0.7, 0.8, 1.0], strict=True))
    fig = plot.plot_gradient_norms({"plain": plain, "residual": residual}, title="depth 6")
    ax = fig.axes[0]
    assert len(fig.axes) == 1 and ax.get_title() == "depth 6"
    assert ax.get_yscale() == "log"
    assert [line.get_label() for line in ax.get_lines()] == ["plain", "residual"]
    assert [t.get_text() for t in ax.get_xticklabels()] == names
    single = plot.plot_gradient_norms(plain)
    assert len(single.axes[0].get_lines()) == 1


def _red_rectangles(ax) -> list[tuple[float, float, float, float]]:
    """(x, y, width, height) of the red outlines in one show_sliding_windows panel."""
    from matplotlib.colors import to_rgba

    return [
        (*patch.get_xy(), patch.get_width(), patch.get_height())
        for patch in ax.patches
        if patch.get_edgecolor() == to_rgba("red")
    ]


def test_show_sliding_windows_outlines_the_window_of_each_output_cell():
    x = torch.arange(1.0, 26.0).view(5, 5)
    out = torch.nn.functional.conv2d(x[None, None], torch.ones(1, 1, 3, 3), stride=2, padding=1)
    fig = plot.show_sliding_windows(
        x,
        out[0, 0],
        kernel_size=3,
        stride=2,
        padding=1,
        positions=[(0, 0), (1, 2)],
        ncols=2,
        suptitle="demo",
    )
    assert _titles(fig) == ["output[0, 0]", "output[1, 2]"]
    assert fig._suptitle.get_text() == "demo"
    gap, padded = 1.5, 7  # 5 + 2 * padding
    # input window at padded cell (i*S, j*S), 3x3; output cell (i, j), 1x1, right of the gap
    assert _red_rectangles(fig.axes[0]) == [(0, 0, 3, 3), (padded + gap, 0, 1, 1)]
    assert _red_rectangles(fig.axes[1]) == [(4, 2, 3, 3), (padded + gap + 2, 1, 1, 1)]
    texts = [t.get_text() for t in fig.axes[1].texts]
    assert len(texts) == 7 * 7 + 3 * 3
    assert texts.count("0") == 7 * 7 - 25  # the zero padding
    assert "117" in texts  # the centre window sum of the output


def test_show_sliding_windows_outlines_the_taps_of_a_dilated_kernel():
    x = torch.arange(49.0).view(7, 7)
    out = torch.nn.functional.conv2d(x[None, None], torch.ones(1, 1, 3, 3), dilation=2)[0, 0]
    assert out.shape == (3, 3)  # 7 - 2 * (3 - 1) = 3
    fig = plot.show_sliding_windows(x, out, kernel_size=3, dilation=2, positions=[(1, 2)])
    boxes = _red_rectangles(fig.axes[0])
    taps = sorted((x0, y0) for x0, y0, w, h in boxes if (w, h) == (1, 1))[:-1]  # last: output
    assert taps == [(c, r) for c in (2, 4, 6) for r in (1, 3, 5)]  # every 2nd cell from (1, 2)
    assert (2, 1, 5, 5) in boxes  # the dashed span D (K - 1) + 1 = 5
    assert out[1, 2] == sum(x[r, c] for r in (1, 3, 5) for c in (2, 4, 6))
    with pytest.raises(ValueError, match="dilation"):
        plot.show_sliding_windows(x, out, kernel_size=3, dilation=4)


def test_show_sliding_windows_defaults_and_bad_input():
    grid = torch.tensor([[1.0, 2, 3], [4, 5, 6], [7, 8, 9]])
    pooled = torch.nn.functional.max_pool2d(grid[None, None], 2, stride=1)[0, 0]
    fig = plot.show_sliding_windows(grid, pooled, kernel_size=2, ncols=4)
    assert len(fig.axes) == 4  # every output cell by default
    big = plot.show_sliding_windows(torch.zeros(6, 6), torch.zeros(5, 5), kernel_size=2)
    assert len(big.axes) == 8  # capped at 8 panels
    with pytest.raises(ValueError, match="outside the output grid"):
        plot.show_sliding_windows(grid, pooled, kernel_size=2, positions=[(2, 0)])
    with pytest.raises(ValueError, match="does not fit"):
        plot.show_sliding_windows(grid, pooled, kernel_size=2, stride=2)
    with pytest.raises(ValueError):
        plot.show_sliding_windows(grid[0], pooled, kernel_size=2)


def test_show_jpeg_displays_a_jpeg_and_closes_the_figure(monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", shown.append)
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.imshow(torch.rand(64, 64).numpy(), cmap="gray")
    plot.show_jpeg(fig, quality=70)
    assert len(shown) == 1 and isinstance(shown[0], IPython.display.Image)
    assert shown[0].format == "jpeg" and shown[0].data[:2] == b"\xff\xd8"  # JPEG magic bytes
    assert not plt.fignum_exists(fig.number)
    with pytest.raises(ValueError, match="quality"):
        plot.show_jpeg(plt.figure(), quality=100)
