"""Palette (distinct, deterministic) and overlays with a legend."""

from __future__ import annotations

import numpy as np
import pytest

from zegclip.common import palette as visualize
from zegclip.common.constants import IGNORE_INDEX
from zegclip.common.palette import blend, min_lab_distance, overlay, palette, srgb_to_lab


@pytest.mark.parametrize(("num_classes", "minimum"), [(20, 40.0), (59, 25.0), (171, 15.0)])
def test_palette_colours_stay_distinct(num_classes, minimum):
    # CIE76 delta E in CIELAB; about 2.3 is a just-noticeable difference. The former random
    # palette had 0.9 at 59 and 171 classes.
    colours = palette(num_classes)
    assert colours.shape == (num_classes, 3) and colours.dtype == np.uint8
    assert min_lab_distance(colours) >= minimum
    assert len({tuple(c) for c in colours}) == num_classes


def test_palette_is_deterministic_and_grows_by_appending():
    assert np.array_equal(palette(59), palette(59))
    assert np.array_equal(palette(171)[:20], palette(20))
    lightness = srgb_to_lab(palette(171))[:, 0]
    assert lightness.min() >= 20 and lightness.max() <= 95  # no near-black or near-white class
    with pytest.raises(ValueError, match="num_classes"):
        palette(-1)


def test_srgb_to_lab_reference_values():
    lab = srgb_to_lab(np.array([[255, 255, 255], [0, 0, 0], [255, 0, 0]]))
    assert np.allclose(lab[0], [100, 0, 0], atol=0.01) and np.allclose(lab[1], [0, 0, 0], atol=0.01)
    assert np.allclose(lab[2], [53.24, 80.09, 67.20], atol=0.05)  # sRGB red, D65


def _image_and_mask():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(40, 60, 3), dtype=np.uint8)
    mask = np.zeros((40, 60), dtype=np.int64)
    mask[:, 20:] = 2
    mask[30:, 40:] = 4
    mask[:5, :5] = IGNORE_INDEX
    return image, mask


def _has_colour(region: np.ndarray, colour: np.ndarray) -> bool:
    return bool((region.reshape(-1, 3) == colour).all(1).any())


def test_overlay_has_a_legend_of_the_classes_present():
    image, mask = _image_and_mask()
    names = ["cat", "dog", "grass", "sky", "road"]
    out = overlay(image, mask, names)
    factor = 7  # 40 px -> at least 256 px: enlarged 7x (nearest)
    assert out.shape[0] == 40 * factor and out.shape[1] > 60 * factor
    blended = blend(image, mask, len(names))
    assert np.array_equal(out[: 40 * factor : factor, : 60 * factor : factor], blended)
    assert np.array_equal(blended[:5, :5], image[:5, :5])  # ignore pixels untouched
    legend = out[:, 60 * factor :]
    colours = palette(len(names))
    for present in (0, 2, 4):
        assert _has_colour(legend, colours[present])
    for absent in (1, 3):
        assert not _has_colour(legend, colours[absent])
    assert (legend.reshape(-1, 3) < 100).all(1).sum() > 200  # dark text and swatch outlines are drawn


def test_legend_entries_are_shares_largest_first():
    _, mask = _image_and_mask()
    entries = visualize.legend_entries(mask, ["cat", "dog", "grass", "sky", "road"])
    assert [e[1] for e in entries] == ["grass", "cat", "road"]
    assert sum(e[2] for e in entries) == pytest.approx(1.0)
    labelled = (mask != IGNORE_INDEX).sum()
    assert entries[2][2] == pytest.approx(10 * 20 / labelled)


def test_overlay_legend_takes_columns_when_many_classes_are_present():
    names = [f"class {i}" for i in range(171)]
    mask = np.arange(171 * 4).reshape(12, 57) % 171
    image = np.full((12, 57, 3), 128, dtype=np.uint8)
    out = overlay(image, mask, names, min_side=256)
    legend = out[:, 57 * 22 :]  # 12 px -> 22x
    colours = palette(171)
    assert all(_has_colour(legend, c) for c in colours)
    assert legend.shape[1] > 2 * legend.shape[0] // 3  # several columns side by side


def test_overlay_refuses_a_class_count():
    image, mask = _image_and_mask()
    with pytest.raises(TypeError, match="class names"):
        overlay(image, mask, 5)  # type: ignore[arg-type]


def test_wandb_masks_keep_class_ids_up_to_255_classes_and_renumber_beyond() -> None:
    """W&B masks hold 0..255: ids as they are (ignore 255) up to 255 classes; A-847 per image."""
    from zegclip.training.wandb_logging import wandb_mask_ids

    names = [f"c{i}" for i in range(20)]
    pred, true = np.array([[0, 19], [5, 5]]), np.array([[0, IGNORE_INDEX], [19, 5]])
    p8, t8, labels = wandb_mask_ids(pred, true, names)
    assert p8.dtype == np.uint8 and p8.tolist() == [[0, 19], [5, 5]] and t8.tolist() == [[0, 255], [19, 5]]
    assert labels[19] == "c19" and labels[255] == "ignore" and len(labels) == 21
    many = [f"c{i}" for i in range(847)]
    pred, true = np.array([[300, 846], [2, 300]]), np.array([[300, IGNORE_INDEX], [846, 700]])
    p8, t8, labels = wandb_mask_ids(pred, true, many)
    assert labels == {0: "c2", 1: "c300", 2: "c700", 3: "c846", 255: "ignore"}
    assert p8.tolist() == [[1, 3], [0, 1]] and t8.tolist() == [[1, 255], [3, 2]]
    crowded = np.arange(300).reshape(15, 20)  # more classes present than W&B values
    p8, _, labels = wandb_mask_ids(crowded, crowded, many)
    assert p8.max() == 254 and labels[254] == "other classes" and labels[253] == "c253"
