"""Turning label maps into pictures: a palette of distinct colours, overlays with a legend.

numpy and PIL only (no torch, no matplotlib): the model's ``Prediction``, the plots and the apps
all draw with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from zegclip.common.constants import IGNORE_INDEX

# Palette candidates: an sRGB grid, step 15 (18^3 colours), lightness L* in [20, 95] so that no
# class is near-black (reads as shadow) or near-white (invisible on a bright image).
_GRID_STEP = 15
_LIGHTNESS = (20.0, 95.0)
_LEGEND_BG = (255, 255, 255)
_LEGEND_FG = (20, 20, 20)


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB ``(..., 3)`` in 0-255 -> CIELAB ``(..., 3)`` (D65 white)."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    to_xyz = np.array(
        [
            [0.4124564, 0.3575761, 0.1804375],
            [0.2126729, 0.7151522, 0.0721750],
            [0.0193339, 0.1191920, 0.9503041],
        ]
    )
    xyz = linear @ to_xyz.T / np.array([0.95047, 1.0, 1.08883])
    eps = (6 / 29) ** 3
    f = np.where(xyz > eps, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def min_lab_distance(colours: np.ndarray) -> float:
    """Smallest CIELAB distance (CIE76 delta E) between two of ``colours`` ``(N, 3)`` uint8."""
    lab = srgb_to_lab(colours)
    dist = np.linalg.norm(lab[:, None] - lab[None], axis=-1)
    np.fill_diagonal(dist, np.inf)
    return float(dist.min())


@lru_cache(maxsize=8)
def _candidates() -> tuple[np.ndarray, np.ndarray]:
    grid = np.arange(0, 256, _GRID_STEP)
    rgb = np.stack(np.meshgrid(grid, grid, grid, indexing="ij"), -1).reshape(-1, 3)
    lab = srgb_to_lab(rgb)
    keep = (lab[:, 0] >= _LIGHTNESS[0]) & (lab[:, 0] <= _LIGHTNESS[1])
    return rgb[keep].astype(np.uint8), lab[keep]


@lru_cache(maxsize=32)
def _greedy_palette(num_classes: int) -> np.ndarray:
    rgb, lab = _candidates()
    if num_classes > len(rgb):
        raise ValueError(f"palette supports at most {len(rgb)} classes, got {num_classes}")
    nearest = np.full(len(lab), np.inf)
    chosen = []
    pick = int(np.argmax(np.hypot(lab[:, 1], lab[:, 2])))  # start at the most saturated colour
    for _ in range(num_classes):
        chosen.append(pick)
        nearest = np.minimum(nearest, np.linalg.norm(lab - lab[pick], axis=1))
        # rounded so that ties resolve by grid order on every platform (last-ulp differences)
        pick = int(np.argmax(np.round(nearest, 6)))
    out = rgb[chosen]
    out.flags.writeable = False
    return out


def palette(num_classes: int) -> np.ndarray:
    """Deterministic, well-separated RGB colours ``(num_classes, 3)`` uint8.

    Greedy farthest-point sampling in CIELAB over an sRGB grid: each colour is the candidate
    farthest from all colours before it, so ``palette(n)[:k] == palette(k)`` (a class keeps its
    colour when the vocabulary grows) and the closest two colours are as far apart as the greedy
    order allows (CIE76 delta E >= 40 at 20 classes, >= 25 at 59, >= 15 at 171; tested).
    """
    if num_classes < 0:
        raise ValueError(f"num_classes must be >= 0, got {num_classes}")
    return _greedy_palette(int(num_classes)).copy()


def blend(image: np.ndarray, mask: np.ndarray, num_classes: int, alpha: float = 0.5) -> np.ndarray:
    """Blend class colours onto an RGB image ``(H, W, 3)`` uint8 from a mask ``(H, W)`` of class
    indices; ``IGNORE_INDEX`` pixels stay untouched. Same size as ``image``, no legend."""
    if image.shape[:2] != mask.shape[:2]:
        raise ValueError(f"image {image.shape[:2]} and mask {mask.shape[:2]} differ in size")
    colours = palette(num_classes)
    out = image.astype(np.float32).copy()
    valid = mask != IGNORE_INDEX
    out[valid] = (1 - alpha) * out[valid] + alpha * colours[mask[valid]]
    return out.round().astype(np.uint8)


def class_shares(mask: np.ndarray, num_classes: int) -> np.ndarray:
    """Fraction of the labelled (non-ignore) pixels per class ``(num_classes,)``."""
    values = np.asarray(mask).ravel()
    values = values[values != IGNORE_INDEX].astype(np.int64)
    counts = np.bincount(values, minlength=num_classes)[:num_classes].astype(np.float64)
    return counts / max(values.size, 1)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def legend_entries(mask: np.ndarray, class_names: Sequence[str]) -> list[tuple[int, str, float]]:
    """``(class index, name, pixel share)`` of the classes present in ``mask``, largest first."""
    shares = class_shares(mask, len(class_names))
    order = sorted(np.flatnonzero(shares > 0), key=lambda i: (-shares[i], i))
    return [(int(i), str(class_names[i]), float(shares[i])) for i in order]


def draw_legend(
    entries: Sequence[tuple[int, str, float | None]], num_classes: int, height: int, font_size: int = 14
) -> Image.Image:
    """A legend panel (white, ``height`` px tall, as wide as needed): one row per entry with the
    class colour swatch, the name and (if not None) the pixel share; extra columns when the rows
    do not fit."""
    colours = palette(num_classes)
    font = _font(font_size)
    pad, row = font_size // 2 + 2, font_size + font_size // 2 + 2
    swatch = font_size
    labels = [f"{name}  {100 * share:.1f}%" if share is not None else name for _, name, share in entries]
    if not labels:
        labels, entries = ["(no class)"], [(-1, "", None)]
    per_column = max(1, (height - 2 * pad) // row)
    columns = [list(range(i, min(i + per_column, len(labels)))) for i in range(0, len(labels), per_column)]
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_w = [int(probe.textlength(t, font=font)) for t in labels]
    col_w = [swatch + pad + max(text_w[i] for i in col) + 2 * pad for col in columns]
    panel = Image.new("RGB", (sum(col_w) + pad, max(height, 2 * pad + row)), _LEGEND_BG)
    draw = ImageDraw.Draw(panel)
    x = pad
    for col, width in zip(columns, col_w):
        for r, i in enumerate(col):
            y = pad + r * row
            index = entries[i][0]
            if index >= 0:
                colour = tuple(int(c) for c in colours[index])
                draw.rectangle([x, y, x + swatch, y + swatch], fill=colour, outline=_LEGEND_FG)
            draw.text((x + swatch + pad, y + swatch / 2), labels[i], fill=_LEGEND_FG, font=font, anchor="lm")
        x += width
    return panel


def overlay(
    image: np.ndarray,
    mask: np.ndarray,
    class_names: Sequence[str],
    alpha: float = 0.5,
    legend: bool = True,
    min_side: int = 256,
) -> np.ndarray:
    """The blended image with a legend of the classes present (colour, name, pixel share).

    Args:
        image: ``(H, W, 3)`` uint8 RGB. mask: ``(H, W)`` class indices, ``IGNORE_INDEX`` = none.
        class_names: the vocabulary ``mask`` indexes (its length fixes the palette).
        min_side: images whose short side is smaller are enlarged by an integer factor
            (nearest neighbour) so that the legend text stays readable beside them.

    Returns:
        ``(H', W' + legend width, 3)`` uint8, where ``H' = k H``, ``W' = k W`` (``k >= 1``).
    """
    if isinstance(class_names, int):
        raise TypeError("overlay() takes the class names (for its legend), not a class count")
    num_classes = len(class_names)
    blended = blend(image, mask, num_classes, alpha)
    factor = max(1, -(-min_side // max(1, min(blended.shape[:2]))))
    if factor > 1:
        blended = np.repeat(np.repeat(blended, factor, axis=0), factor, axis=1)
    if not legend:
        return blended
    height = blended.shape[0]
    font_size = int(np.clip(height // 24, 12, 28))
    panel = draw_legend(legend_entries(mask, class_names), num_classes, height, font_size)
    canvas = Image.new("RGB", (blended.shape[1] + panel.width, max(height, panel.height)), _LEGEND_BG)
    canvas.paste(Image.fromarray(blended), (0, 0))
    canvas.paste(panel, (blended.shape[1], 0))
    return np.asarray(canvas)
