"""Evaluation plots: what each figure shows (normalisation, split colours, mean lines, panels) and the PNG
files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.colors import to_hex
from PIL import Image

from zegclip.common.constants import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD
from zegclip.common.palette import palette
from zegclip.training import plots

NAMES = ["cat", "dog", "bird", "grass", "sky", "tree"]
SEEN, UNSEEN = [0, 1, 3, 4], [2, 5]


def confmat(num: int = 6, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(0, 50, (num, num), generator=g) + torch.eye(num, dtype=torch.long) * 400
    counts[3] = 0  # no labelled pixel of class 3
    return counts


def test_confusion_matrix_is_row_normalised_with_unseen_marked() -> None:
    counts = confmat()
    fig = plots.confusion_matrix_figure(counts, NAMES, SEEN, UNSEEN)
    ax = fig.axes[0]
    shown = np.ma.filled(ax.images[0].get_array(), np.nan)
    with np.errstate(invalid="ignore"):
        expected = counts.double().numpy() / counts.double().numpy().sum(1, keepdims=True)
    assert np.allclose(shown[[0, 1, 2, 4, 5]], expected[[0, 1, 2, 4, 5]])
    assert np.isnan(shown[3]).all()  # no pixels of that class: blank, not "0 %"
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["cat", "dog", "bird *", "grass", "sky", "tree *"]
    colours = [to_hex(t.get_color()) for t in ax.get_xticklabels()]
    assert [c == plots.UNSEEN_COLOUR for c in colours] == [i in UNSEEN for i in range(6)]
    cells = [t.get_text() for t in ax.texts]
    assert f"{100 * expected[0, 0]:.0f}" in cells and len(cells) <= 30


def test_confusion_matrix_many_classes_has_no_cell_text() -> None:
    names = [f"class {i}" for i in range(40)]
    fig = plots.confusion_matrix_figure(confmat(40), names, list(range(35)), list(range(35, 40)))
    assert len(fig.axes[0].texts) == 0 and len(fig.axes[0].get_xticklabels()) == 40


def test_plots_of_an_847_class_vocabulary_name_ids_and_present_classes() -> None:
    """A-847: class-id ticks every 50 (847 names cannot be read), bars for the classes present only."""
    names = [f"class {i}" for i in range(847)]
    counts = torch.zeros(847, 847)
    counts[0, 0], counts[300, 300], counts[846, 5] = 10, 4, 3
    fig = plots.confusion_matrix_figure(counts, names, list(range(847)), [])
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert ticks == [str(t) for t in range(0, 847, 50)] and "class id" in fig.axes[0].get_xlabel()
    iou = {name: None for name in names} | {
        "class 0": 1.0,
        "class 300": 1.0,
        "class 846": 0.0,
        "class 5": 0.0,
    }
    bars = plots.per_class_iou_figure(iou, list(range(847)), [])
    ax = bars.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["class 0", "class 300", "class 5", "class 846"]
    assert "843 classes absent from truth and prediction not shown" in ax.get_title()


def test_confusion_matrix_shape_is_checked() -> None:
    with pytest.raises(ValueError, match=r"confmat must be \(6, 6\) for 6 class names, got \(5, 5\)"):
        plots.confusion_matrix_figure(torch.zeros(5, 5), NAMES, SEEN, UNSEEN)


def test_iou_bars_coloured_by_split_with_mean_lines() -> None:
    iou = {"cat": 0.5, "dog": 0.9, "bird": 0.2, "grass": None, "sky": 0.7, "tree": 0.4}
    fig = plots.per_class_iou_figure(iou, SEEN, UNSEEN)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["dog", "sky", "cat", "tree *", "bird *", "grass"]  # highest first, absent last
    widths = [p.get_width() for p in ax.patches]
    assert widths == pytest.approx([90, 70, 50, 40, 20, 0])
    colours = [to_hex(p.get_facecolor()) for p in ax.patches]
    assert colours == [plots.SEEN_COLOUR] * 3 + [plots.UNSEEN_COLOUR] * 2 + [plots.SEEN_COLOUR]
    lines = {line.get_label(): line.get_xdata()[0] for line in ax.get_lines()}
    assert lines == {"mIoU(S) 70.0": pytest.approx(70.0), "mIoU(U) 30.0": pytest.approx(30.0)}
    assert "absent" in [t.get_text() for t in ax.texts]
    in_order = plots.per_class_iou_figure(iou, SEEN, UNSEEN, sort=False)
    assert [t.get_text() for t in in_order.axes[0].get_yticklabels()][0] == "cat"


def sample(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    pixels = torch.rand(3, 24, 32, generator=g) * 255
    image = (pixels - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)
    label = torch.randint(0, 6, (48, 64), generator=g)
    label[:4] = IGNORE_INDEX
    return {
        "image": image,
        "label": label,
        "pred": torch.randint(0, 6, (48, 64), generator=g),
        "name": f"im{seed}",
    }


def test_colour_mask_uses_the_palette_and_black_for_ignore() -> None:
    mask = np.array([[0, 5], [IGNORE_INDEX, 2]])
    out = plots.colour_mask(mask, palette(6))
    assert (out[0, 0] == palette(6)[0]).all() and (out[0, 1] == palette(6)[5]).all()
    assert (out[1, 0] == 0).all() and out.dtype == np.uint8


def test_sample_panels_show_image_truth_prediction_and_legend() -> None:
    samples = [sample(0), sample(1)]
    fig = plots.sample_panels_figure(samples, NAMES, UNSEEN)
    assert len(fig.axes) == 2 * 4
    truth = fig.axes[1].images[0].get_array()
    assert np.array_equal(np.asarray(truth), plots.colour_mask(samples[0]["label"].numpy(), palette(6)))
    shown_pred = np.asarray(fig.axes[2].images[0].get_array())
    full = plots.colour_mask(samples[0]["pred"].numpy(), palette(6))
    ignored = samples[0]["label"].numpy() == IGNORE_INDEX
    assert np.array_equal(shown_pred[~ignored], full[~ignored])
    assert (shown_pred[ignored] <= full[ignored]).all() and (
        shown_pred[ignored] < full[ignored]
    ).any()  # dimmed
    legend = fig.axes[3].get_legend()
    texts = [t.get_text() for t in legend.get_texts()]
    assert "bird * (unseen)" in texts and "cat" in texts
    with pytest.raises(ValueError, match="at least one sample"):
        plots.sample_panels_figure([], NAMES)


def test_write_evaluation_plots_writes_pngs(tmp_path: Path) -> None:
    paths = plots.write_evaluation_plots(tmp_path, confmat(), NAMES, SEEN, UNSEEN, [sample(0)])
    assert set(paths) == {"confusion_matrix", "iou_per_class", "samples"}
    for name, path in paths.items():
        assert path == tmp_path / "plots" / f"{name}.png"
        with Image.open(path) as image:
            assert image.format == "PNG" and min(image.size) >= 300
    without = plots.write_evaluation_plots(tmp_path / "b", confmat(), NAMES, SEEN, UNSEEN)
    assert set(without) == {"confusion_matrix", "iou_per_class"}


def test_importing_plots_leaves_the_pyplot_backend_alone() -> None:
    import importlib

    import matplotlib

    before = matplotlib.rcParams["backend"]
    importlib.reload(plots)
    assert matplotlib.rcParams["backend"] == before  # figures use the Agg canvas directly
