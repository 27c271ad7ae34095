"""Tiny synthetic datasets in the real on-disk layouts, built in temporary folders."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zegclip.constants import IGNORE_INDEX

_THIS_MODULE = sys.modules[__name__]  # taken now: other folders' conftest.py reuse the name later
H, W = 40, 60


def stripes(values: Sequence[int], h: int = H, w: int = W, ignore_row: bool = False) -> np.ndarray:
    """A label map made of vertical stripes of ``values`` (optionally a 255 first row)."""
    lab = np.zeros((h, w), dtype=np.uint8)
    bounds = np.linspace(0, w, len(values) + 1).astype(int)
    for v, a, b in zip(values, bounds[:-1], bounds[1:]):
        lab[:, a:b] = v
    if ignore_row:
        lab[0] = 255
    return lab


def as_ids(label: np.ndarray) -> np.ndarray:
    """A decoded-label expectation written with 255 for ignore, as the datasets emit it (uint16,
    ``IGNORE_INDEX`` = ignore)."""
    out = np.asarray(label).astype(np.uint16)
    out[np.asarray(label) == 255] = IGNORE_INDEX
    return out


def write_image(path: Path, h: int = H, w: int = W, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path, quality=95)


def write_label(path: Path, label: np.ndarray, palette: bool = False) -> None:
    """Save ids as a grayscale PNG, or as a palette PNG like VOC's SegmentationClass."""
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(label)
    if palette:
        im = Image.frombytes("P", (label.shape[1], label.shape[0]), label.tobytes())
        im.putpalette([c for i in range(256) for c in (i, (7 * i) % 256, (13 * i) % 256)])
    im.save(path)


def write_list(path: Path, ids: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{i}\n" for i in ids))


# VOC raw labels: 0 background, 1..20 classes, 255 border
VOC_TRAIN = {"2007_000032": [0, 1, 16], "2007_000033": [2, 3, 20]}
VOC_AUG = {"2008_000001": [0, 5, 6, 7]}
VOC_VAL = {"2007_000039": ([16, 0, 20], (H, W)), "2007_000042": ([1, 15], (50, 30))}


def make_voc(root: Path) -> Path:
    base = root / "VOCdevkit" / "VOC2012"
    sets = base / "ImageSets" / "Segmentation"
    for k, (i, vals) in enumerate(VOC_TRAIN.items()):
        write_image(base / "JPEGImages" / f"{i}.jpg", seed=k)
        write_label(base / "SegmentationClass" / f"{i}.png", stripes(vals, ignore_row=True), palette=True)
    for k, (i, vals) in enumerate(VOC_AUG.items()):
        write_image(base / "JPEGImages" / f"{i}.jpg", seed=10 + k)
        write_label(base / "SegmentationClassAug" / f"{i}.png", stripes(vals))
    for k, (i, (vals, (h, w))) in enumerate(VOC_VAL.items()):
        write_image(base / "JPEGImages" / f"{i}.jpg", h, w, seed=20 + k)
        write_label(
            base / "SegmentationClass" / f"{i}.png", stripes(vals, h, w, ignore_row=True), palette=True
        )
    write_list(sets / "train.txt", list(VOC_TRAIN))
    write_list(sets / "aug.txt", list(VOC_AUG))
    write_list(sets / "val.txt", list(VOC_VAL))
    return root


COCO = {
    "train2017": {"000000000009": [0, 19, 170], "000000000025": [23, 255, 5]},
    "val2017": {"000000000139": [28, 29, 36], "000000000285": [160, 1]},
}


def make_coco(root: Path) -> Path:
    base = root / "coco_stuff164k"
    for split, items in COCO.items():
        for k, (i, vals) in enumerate(items.items()):
            write_image(base / "images" / split / f"{i}.jpg", seed=k)
            write_label(base / "annotations" / split / f"{i}_labelTrainIds.png", stripes(vals))
    return root


CONTEXT = {
    "train": {"2008_000002": [0, 1, 59], "2008_000003": [2, 3, 38]},
    "val": {"2008_000007": [0, 10, 20]},
}


def make_context(root: Path) -> Path:
    base = root / "VOCdevkit" / "VOC2010"
    for split, items in CONTEXT.items():
        for k, (i, vals) in enumerate(items.items()):
            write_image(base / "JPEGImages" / f"{i}.jpg", seed=k)
            write_label(base / "SegmentationClassContext" / f"{i}.png", stripes(vals))
        write_list(base / "ImageSets" / "SegmentationContext" / f"{split}.txt", list(items))
    return root


def make_custom(root: Path) -> Path:
    (root).mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("# my classes\ncat\ndog\n\nbird\n")
    for split, stems in {"train": ["a", "b"], "val": ["c"]}.items():
        for k, s in enumerate(stems):
            write_image(root / "images" / split / f"{s}.jpg", seed=k)
            write_label(root / "labels" / split / f"{s}.png", stripes([0, 1, 2, 255]))
    return root


@pytest.fixture()
def voc_root(tmp_path: Path) -> Path:
    return make_voc(tmp_path / "data")


@pytest.fixture()
def coco_root(tmp_path: Path) -> Path:
    return make_coco(tmp_path / "data")


@pytest.fixture()
def context_root(tmp_path: Path) -> Path:
    return make_context(tmp_path / "data")


@pytest.fixture()
def custom_root(tmp_path: Path) -> Path:
    return make_custom(tmp_path / "data" / "custom")


@pytest.fixture(scope="session")
def synth():
    """This module's builders and tables (tests use ``synth.stripes(...)`` etc. instead of
    importing conftest, which is fragile with several conftest.py files)."""
    return _THIS_MODULE
