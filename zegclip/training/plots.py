"""Evaluation plots: the normalised confusion matrix, per-class IoU bars, image / truth / prediction panels.

Written as PNG files into ``<run folder>/plots/`` after every test (``train.py``, ``eval.py``) and
sent to W&B when a W&B logger is active. Matplotlib is used through its object-oriented API with
the Agg canvas, so importing this module never changes the pyplot backend of a notebook.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize, PowerNorm
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from zegclip.common.constants import IGNORE_INDEX
from zegclip.common.metric_names import LABELS
from zegclip.common.palette import palette
from zegclip.model.preprocess import denormalize

SEEN_COLOUR = "#3b75af"  # blue
UNSEEN_COLOUR = "#e1812c"  # orange: tells the splits apart with red-green colour blindness too
CELL_TEXT_MAX = 30  # per-cell percentages up to this many classes
NAMED_TICKS_MAX = 200  # class names on the axes up to this many classes; beyond (A-847, PC-459) class ids
IGNORE_RGB = (0, 0, 0)


def _figure(width: float, height: float, dpi: int = 100) -> Figure:
    fig = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _font_size(num_classes: int) -> float:
    """Tick-label size: 10 pt for a few classes down to 6 pt at COCO-Stuff's 171."""
    return float(np.clip(10 - (num_classes - 20) / 30, 6, 10))


def _as_numpy(values: Any) -> np.ndarray:
    if torch.is_tensor(values):
        return values.detach().cpu().double().numpy()
    return np.asarray(values, dtype=np.float64)


def _split_names(class_names: Sequence[str], unseen: Sequence[int]) -> list[str]:
    """Class names with unseen ones marked ``*`` (the marker survives printing in grey)."""
    marked = set(int(i) for i in unseen)
    return [f"{name} *" if i in marked else name for i, name in enumerate(class_names)]


def confusion_matrix_figure(
    confmat: Any, class_names: Sequence[str], seen: Sequence[int], unseen: Sequence[int]
) -> Figure:
    """Row-normalised confusion matrix (rows: true class, columns: predicted class).

    Each row shows where a class's labelled pixels went (the diagonal is the class's recall);
    classes without labelled pixels are grey. Unseen classes are orange and marked ``*``. Cells
    carry percentages up to 30 classes; beyond that the colour alone, on a square-root scale.

    Args:
        confmat: ``(C, C)`` pixel counts (``ZeroShotSegmentationMetrics.compute()``).
    """
    counts = _as_numpy(confmat)
    num = len(class_names)
    if counts.shape != (num, num):
        raise ValueError(f"confmat must be ({num}, {num}) for {num} class names, got {tuple(counts.shape)}")
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        normalised = np.where(totals > 0, counts / np.maximum(totals, 1), np.nan)
    side = float(np.clip(0.12 * num + 3.5, 6, 26))
    fig = _figure(side + 1.2, side, dpi=100 if num <= 60 else 120)
    ax = fig.add_subplot()
    cmap = colormaps["Blues"].with_extremes(bad="0.85")  # grey: no labelled pixel of that class
    # many classes: small confusions would vanish on a linear scale, a square-root scale shows them
    norm = Normalize(0, 1) if num <= CELL_TEXT_MAX else PowerNorm(0.5, 0, 1)
    image = ax.imshow(normalised, cmap=cmap, norm=norm, interpolation="nearest")
    cbar = fig.colorbar(image, ax=ax, shrink=0.6, pad=0.01)
    cbar.set_label(
        "fraction of the true class's pixels" + ("" if num <= CELL_TEXT_MAX else " (square-root scale)")
    )
    size = _font_size(num)
    unseen_set = set(int(i) for i in unseen)
    if num <= NAMED_TICKS_MAX:
        names = _split_names(class_names, unseen)
        ax.set_xticks(range(num), names, rotation=90, fontsize=size)
        ax.set_yticks(range(num), names, fontsize=size)
        for labels in (ax.get_xticklabels(), ax.get_yticklabels()):
            for i, label in enumerate(labels):
                label.set_color(UNSEEN_COLOUR if i in unseen_set else "black")
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
    else:  # hundreds of names cannot be read (and take a minute to draw): class ids every 50
        ticks = list(range(0, num, 50))
        ax.set_xticks(ticks, [str(t) for t in ticks], rotation=90, fontsize=size)
        ax.set_yticks(ticks, [str(t) for t in ticks], fontsize=size)
        ax.set_xlabel("predicted class id (names: metrics.json)")
        ax.set_ylabel("true class id")
    title = "Confusion matrix, row-normalised"
    if unseen_set:
        title += "  (orange *: unseen classes)"
    ax.set_title(title)
    if num <= CELL_TEXT_MAX:
        for r in range(num):
            for c in range(num):
                value = normalised[r, c]
                if value == value and value >= 0.005:
                    ax.text(
                        c,
                        r,
                        f"{100 * value:.0f}",
                        ha="center",
                        va="center",
                        fontsize=size - 1,
                        color="white" if value > 0.55 else "black",
                    )
    return fig


def per_class_iou_figure(
    iou: dict[str, float | None], seen: Sequence[int], unseen: Sequence[int], sort: bool = True
) -> Figure:
    """Horizontal IoU bars (%) coloured by split, with the mIoU(S) and mIoU(U) lines.

    Args:
        iou: ``{class name: IoU fraction or None/NaN (absent from truth and prediction)}`` in class order.
        sort: highest IoU first (False: class order).
    """
    names = list(iou)
    values = np.array([np.nan if v is None else float(v) for v in iou.values()], dtype=np.float64) * 100
    unseen_set = set(int(i) for i in unseen)
    seen_idx = [int(i) for i in seen]
    order = list(range(len(names)))
    if sort:
        order.sort(key=lambda i: (np.isnan(values[i]), -np.nan_to_num(values[i])))
    hidden = 0
    if len(names) > NAMED_TICKS_MAX:  # A-847, PC-459: the classes present only (absent ones carry no bar)
        kept = [i for i in order if not np.isnan(values[i])]
        hidden, order = len(order) - len(kept), kept or order[:1]
    num = len(order)
    fig = _figure(8.5, float(np.clip(0.2 * num + 1.6, 3.5, 40)))
    ax = fig.add_subplot()
    y = np.arange(num)
    shown = values[order]
    colours = [UNSEEN_COLOUR if i in unseen_set else SEEN_COLOUR for i in order]
    ax.barh(y, np.nan_to_num(shown), color=colours, height=0.75)
    size = _font_size(num)
    ax.set_yticks(y, [names[i] + (" *" if i in unseen_set else "") for i in order], fontsize=size)
    for label, i in zip(ax.get_yticklabels(), order):
        label.set_color(UNSEEN_COLOUR if i in unseen_set else "black")
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_ylim(num - 0.5, -0.5)
    ax.set_xlabel("IoU (%)")
    ax.grid(axis="x", alpha=0.3)
    for row, value in enumerate(shown):
        text = "absent" if np.isnan(value) else (f"{value:.1f}" if num <= 60 else None)
        if text:
            ax.text(
                (0 if np.isnan(value) else value) + 0.8,
                row,
                text,
                va="center",
                fontsize=size - 1,
                color="0.25",
            )
    handles: list[Any] = []
    means = []
    for index, colour, label in (
        (seen_idx, SEEN_COLOUR, "seen"),
        (sorted(unseen_set), UNSEEN_COLOUR, "unseen"),
    ):
        metric = LABELS[f"mIoU_{label}"]
        present = values[index] if index else np.array([])
        present = present[~np.isnan(present)]
        if present.size:
            mean = float(present.mean())
            handles.append(
                ax.axvline(mean, color=colour, linestyle="--", linewidth=1.5, label=f"{metric} {mean:.1f}")
            )
            handles.append(Patch(color=colour, label=f"{label} classes"))
            means.append(f"{metric} {mean:.1f}")
    if handles:
        ax.legend(handles=handles, loc="lower right", fontsize=9, framealpha=0.9)
    ax.set_title(
        "IoU per class"
        + (" (highest first)" if sort else "")
        + (": " + ", ".join(means) if means else "")
        + (f"\n{hidden} classes absent from truth and prediction not shown" if hidden else "")
    )
    if num > 40:  # a tall figure: the scale at the top too
        ax.tick_params(axis="x", top=True, labeltop=True)
    return fig


def colour_mask(mask: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """``(H, W)`` class ids -> ``(H, W, 3)`` uint8 RGB; ignore pixels (``IGNORE_INDEX``) black."""
    out = np.zeros((*mask.shape, 3), dtype=np.uint8)
    valid = mask != IGNORE_INDEX
    out[valid] = colours[np.clip(mask[valid], 0, len(colours) - 1)]
    out[~valid] = IGNORE_RGB
    return out


def sample_panels_figure(
    samples: Sequence[dict[str, Any]], class_names: Sequence[str], unseen: Sequence[int] = ()
) -> Figure:
    """One row per sample: image, ground truth, prediction, and a legend of the classes shown.

    Args:
        samples: dicts ``{"image": (3, h, w) normalised tensor, "label": (H, W) long,
            "pred": (H, W) long, "name": str}`` (image at the evaluated scale, masks at the original
            resolution; same aspect ratio).
    """
    if not samples:
        raise ValueError("sample_panels_figure needs at least one sample")
    colours = palette(len(class_names))
    unseen_set = set(int(i) for i in unseen)
    rows = len(samples)
    height, width = samples[0]["label"].shape[-2:]
    panel = 13 / 3.75  # inches per image panel (three panels and a legend column)
    fig = _figure(13, rows * (panel * height / width + 0.35) + 0.2)
    grid = fig.add_gridspec(rows, 4, width_ratios=[1, 1, 1, 0.75])
    for r, sample in enumerate(samples):
        label = sample["label"].cpu().numpy().astype(np.int64)
        pred = sample["pred"].cpu().numpy().astype(np.int64)
        ignored = label == IGNORE_INDEX
        prediction = colour_mask(pred, colours)
        if ignored.shape == pred.shape and ignored.any():  # pixels the metrics skip: dimmed
            prediction[ignored] = (prediction[ignored] * 0.35).astype(np.uint8)
        panels = [
            (denormalize(sample["image"]), f"image {sample.get('name', '')}".strip()),
            (colour_mask(label, colours), "ground truth (black: ignored)"),
            (prediction, "prediction (dim: not evaluated)" if ignored.any() else "prediction"),
        ]
        for c, (array, title) in enumerate(panels):
            ax = fig.add_subplot(grid[r, c])
            ax.imshow(
                array, interpolation="nearest", aspect="equal", extent=(0, label.shape[1], label.shape[0], 0)
            )
            ax.set_title(title, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        shown = sorted(set(np.unique(label).tolist()) | set(np.unique(pred).tolist()))
        shown = [i for i in shown if 0 <= i < len(class_names)]
        legend_ax = fig.add_subplot(grid[r, 3])
        legend_ax.axis("off")
        handles = [
            Patch(
                facecolor=colours[i] / 255,
                edgecolor="0.3",
                label=class_names[i] + (" * (unseen)" if i in unseen_set else ""),
            )
            for i in shown
        ]
        if handles:
            legend_ax.legend(
                handles=handles,
                loc="center left",
                fontsize=8,
                frameon=False,
                ncols=1 if len(handles) <= 14 else 2,
            )
    return fig


def save_png(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def write_evaluation_plots(
    out_dir: str | Path,
    confmat: Any,
    class_names: Sequence[str],
    seen: Sequence[int],
    unseen: Sequence[int],
    samples: Sequence[dict[str, Any]] = (),
) -> dict[str, Path]:
    """Write ``plots/confusion_matrix.png``, ``plots/iou_per_class.png`` and (with samples)
    ``plots/samples.png`` under ``out_dir``; returns ``{name: path}``."""
    from zegclip.training.metrics import summarize

    folder = Path(out_dir) / "plots"
    summary = summarize(torch.as_tensor(_as_numpy(confmat)), class_names, seen, unseen)
    figures = {
        "confusion_matrix": confusion_matrix_figure(confmat, class_names, seen, unseen),
        "iou_per_class": per_class_iou_figure(summary["IoU_per_class"], seen, unseen),  # type: ignore[arg-type]
    }
    if samples:
        figures["samples"] = sample_panels_figure(samples, class_names, unseen)
    return {name: save_png(fig, folder / f"{name}.png") for name, fig in figures.items()}
