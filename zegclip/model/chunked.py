"""Segmentation labels without full-size scores of every class (vocabularies of hundreds of classes).

Evaluation needs only the argmax, but the scores it is the argmax of are, per class, upsampled from
the decoder grid to the crop size, calibrated, averaged over sliding windows (and test-time views)
and resized to the original image: ``(C, H, W)`` floats, 3.3 GiB for one 512x512 crop at C = 847.
Here every window (of every view) goes through the network once and only its decoder-grid logits
``(B, C, h/16, w/16)`` are kept; then the scores are assembled for a chunk of classes at a time,
with exactly the operations of the full path (:meth:`ZegCLIP.segment` then a bilinear resize), and
a running maximum keeps the best class. Each class's numbers go through the same per-channel
operations as in the full path, so the labels equal ``argmax`` of the full scores (ties to the lower
index, as :func:`torch.argmax`); ``tests/test_model_chunked.py`` checks it.

Memory: the grid logits (``C x 1024`` floats per window and view) plus one chunk of classes at full
size (``max_bytes``), whatever C is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from zegclip.model.inference import Box, resize_into, scaled_size, window_batches

CHUNK_BYTES = 128 * 2**20
"""Default budget of one chunk's full-size score tensors (and their temporaries)."""

GridFn = Callable[[torch.Tensor], torch.Tensor]
"""Images ``(N, 3, h, w)`` -> the last decoder layer's logits at the patch grid ``(N, C, h', w')``."""

ToScores = Callable[[torch.Tensor, "list[int] | None", tuple[int, int], "torch.Tensor | None"], torch.Tensor]
"""``(grid logits (N, k, h', w'), seen indices among those k, window size (h, w), buffer)`` ->
calibrated scores ``(N, k, h, w)`` (what :meth:`ZegCLIP.scores_from_logits` does); ``buffer``,
when given, ``(N, k, S, S)`` receives the maps upsampled to the crop size."""


class Buffers:
    """Full-size tensors reused from one chunk of classes to the next.

    A fresh tensor of tens of MiB is new memory the kernel must fault in and zero: on this
    project's CPU allocating took about as long as the arithmetic of the class-dependent work.
    Reuse is only for consumers that finish with a chunk before asking for the next
    (:func:`running_argmax`).
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._store: dict[tuple, torch.Tensor] = {}

    def get(
        self, name: str, shape: Sequence[int], dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor | None:
        """An uninitialised ``shape`` tensor kept under ``name``; None when disabled."""
        if not self.enabled:
            return None
        key = (name, tuple(shape), dtype, device)
        if key not in self._store:
            self._store[key] = torch.empty(tuple(shape), dtype=dtype, device=device)
        return self._store[key]


@dataclass
class GridView:
    """One test-time view (the image, rescaled and / or mirrored) scored at the decoder grid.

    Attributes:
        size: the view's ``(h, w)``.
        mirrored: the view is the mirror image (its scores are flipped back).
        boxes: the sliding windows, or None for whole-image mode.
        logits: per window (or the one whole image) ``(B, C, h', w')``.
    """

    size: tuple[int, int]
    mirrored: bool
    boxes: list[Box] | None
    logits: list[torch.Tensor]
    dtype: torch.dtype


def grid_views(
    grid_fn: GridFn,
    images: torch.Tensor,
    *,
    mode: str,
    crop: int,
    stride: int,
    window_batch: int = 8,
    scales: Sequence[float] | None = None,
    flip: bool = False,
) -> list[GridView]:
    """Run the network once over every window of every view (as :func:`sliding_window` and
    :func:`multi_scale_flip` batch them) and keep the decoder-grid logits."""
    if mode not in ("slide", "whole"):
        raise ValueError(f"mode must be 'slide' or 'whole', got {mode!r}")
    tta = scales is not None or flip
    scale_list = [float(s) for s in scales] if scales is not None else [1.0]
    if tta and (not scale_list or any(not s > 0 for s in scale_list)):
        raise ValueError(f"scales must be a non-empty list of positive numbers, got {scale_list}")
    height, width = images.shape[-2:]
    views = []
    for scale in scale_list:
        size = scaled_size(height, width, scale)
        scaled = (
            images
            if size == (height, width)
            else F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        )
        for mirrored in (False, True) if flip else (False,):
            view = scaled.flip(-1) if mirrored else scaled
            if mode == "whole":
                views.append(GridView(size, mirrored, None, [grid_fn(view)], view.dtype))
                continue
            boxes: list[Box] = []
            logits: list[torch.Tensor] = []
            b = view.shape[0]
            for chunk, windows in window_batches(view, crop, stride, window_batch):
                grid = grid_fn(windows)
                boxes.extend(chunk)
                logits.extend(grid.reshape(len(chunk), b, *grid.shape[1:]).unbind(0))
            views.append(GridView(size, mirrored, boxes, logits, view.dtype))
    return views


def view_scores(
    view: GridView,
    to_scores: ToScores,
    start: int,
    stop: int,
    seen: list[int] | None,
    buffers: Buffers | None = None,
    mask_size: tuple[int, int] | None = None,
    name: str = "view",
) -> torch.Tensor:
    """Calibrated scores of classes ``start:stop`` over the view ``(B, k, h, w)``: the window average."""
    buffers = buffers or Buffers(False)
    first = view.logits[0]
    b, k = first.shape[0], stop - start
    # the maps upsampled from the grid have the logits' dtype (bf16 under autocast), the window sum
    # the images' (as sliding_window's)
    mask = buffers.get(f"{name}/mask", (b, k, *mask_size), first.dtype, first.device) if mask_size else None
    if view.boxes is None:
        return to_scores(first[:, start:stop], seen, view.size, mask)
    out = buffers.get(f"{name}/sum", (b, k, *view.size), view.dtype, first.device)
    out = torch.zeros(b, k, *view.size, dtype=view.dtype, device=first.device) if out is None else out.zero_()
    count = torch.zeros(1, 1, *view.size, dtype=view.dtype, device=out.device)
    for (y1, x1, y2, x2), logits in zip(view.boxes, view.logits):
        out[:, :, y1:y2, x1:x2] += to_scores(logits[:, start:stop], seen, (y2 - y1, x2 - x1), mask)
        count[:, :, y1:y2, x1:x2] += 1
    return out.div_(count) if buffers.enabled else out / count


def chunk_scores(
    views: Sequence[GridView],
    to_scores: ToScores,
    start: int,
    stop: int,
    seen: Sequence[int] | None,
    size: tuple[int, int],
    tta: bool,
    buffers: Buffers | None = None,
    mask_size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Scores of classes ``start:stop`` at the input ``size`` ``(B, k, H, W)``, averaged over the views."""
    local = None if seen is None else [i - start for i in seen if start <= i < stop]
    total: torch.Tensor | None = None
    for number, view in enumerate(views):
        scores = view_scores(view, to_scores, start, stop, local, buffers, mask_size, name=f"view{number}")
        if view.mirrored:
            scores = scores.flip(-1)
        if scores.shape[-2:] != size:
            scores = F.interpolate(scores, size=size, mode="bilinear", align_corners=False)
        total = scores if total is None else total + scores
    assert total is not None
    return total / len(views) if tta else total


ALIGN = 64
"""Chunks of at least this many classes start at multiples of it (see :func:`class_chunks`)."""


def class_chunks(num_classes: int, per_chunk: int, small_maps: bool = False) -> list[tuple[int, int]]:
    """``(start, stop)`` of each chunk of at most ``per_chunk`` classes (more only to avoid a chunk of
    3, or, with ``small_maps``, one of fewer than 64).

    These rules keep every class's numbers those of the full tensor. ATen resizes small maps
    (output height + width <= 128: ``small_maps``) with a kernel vectorised over channels, whose
    last ``C % 16`` channels take a scalar path that rounds differently: chunks of 64 or more
    classes start at multiples of 64, so each class falls in a vector lane or in the scalar tail
    exactly as in the full tensor. And with one thread ATen resizes 3-channel tensors with that
    kernel too: no chunk holds exactly 3 classes.
    """
    step = max(1, min(num_classes, max(per_chunk, ALIGN if small_maps else 1)))
    if step >= ALIGN:
        step -= step % ALIGN
    elif step == 3:
        step = 2
    bounds = [*range(0, num_classes, step), num_classes]
    chunks = list(zip(bounds[:-1], bounds[1:]))
    start = chunks[-1][0]
    if (
        num_classes - start == 3 and num_classes != 3
    ):  # a last chunk of 3: into the aligned one before, or 2 + 1
        chunks[-2:] = (
            [(chunks[-2][0], num_classes)]
            if step >= ALIGN
            else [chunks[-2], (start, start + 2), (start + 2, num_classes)]
        )
    return chunks


def classes_per_chunk(batch: int, sizes: Sequence[tuple[int, int]], element: int, max_bytes: int) -> int:
    """Classes per chunk within ``max_bytes``: each costs about two copies of every full-size map it
    passes through."""
    per_class = 2 * batch * element * sum(h * w for h, w in sizes)
    return max(1, max_bytes // max(1, per_class))


def iter_chunks(
    views: Sequence[GridView],
    to_scores: ToScores,
    num_classes: int,
    seen: Sequence[int] | None,
    size: tuple[int, int],
    *,
    out_size: tuple[int, int] | None = None,
    tta: bool = False,
    resize_dtype: torch.dtype | None = None,
    mask_size: tuple[int, int] | None = None,
    max_bytes: int = CHUNK_BYTES,
    reuse: bool = False,
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """``(start, stop, scores)`` per chunk of classes: the assembled scores of classes
    ``start:stop`` at ``size`` ``(B, k, H, W)``, cast to ``resize_dtype`` and resized to
    ``out_size`` when given. Concatenated, the chunks are the full scores. With ``reuse`` the
    chunks live in buffers that the next chunk overwrites (for consumers such as
    :func:`running_argmax` that are done with a chunk when they ask for the next)."""
    first = views[0].logits[0]
    sizes = (
        [v.size for v in views]
        + [size]
        + ([out_size] if out_size else [])
        + ([mask_size] if mask_size else [])
    )
    per_chunk = classes_per_chunk(first.shape[0], sizes, max(first.element_size(), 4), max_bytes)
    small = any(h + w <= 128 for h, w in sizes)
    buffers = Buffers(reuse and len(views) == 1)  # several views would alias each other's buffers
    for start, stop in class_chunks(num_classes, per_chunk, small):
        scores = chunk_scores(views, to_scores, start, stop, seen, size, tta, buffers, mask_size)
        if resize_dtype is not None:
            scores = scores.to(resize_dtype)
        if out_size is not None and tuple(out_size) != tuple(scores.shape[-2:]):
            # (a resize to the same size is the identity: bilinear weights 1 and 0)
            target = buffers.get("out", (*scores.shape[:2], *out_size), scores.dtype, scores.device)
            scores = (
                F.interpolate(scores, size=out_size, mode="bilinear", align_corners=False)
                if target is None
                else resize_into(scores, target)
            )
        yield start, stop, scores


def running_argmax(chunks: Iterable[tuple[int, int, torch.Tensor]]) -> torch.Tensor:
    """``argmax`` over classes ``(B, H, W)`` of chunks ``(start, stop, (B, k, H, W))`` in class order;
    ties go to the lower class index, as :func:`torch.argmax` (within a chunk ``torch.max`` keeps
    the first maximum; across chunks only a strictly larger value replaces the best)."""
    best = best_index = values = index = better = None
    for start, _, scores in chunks:
        if values is None or values.shape != scores.shape[:1] + scores.shape[2:]:
            shape = scores.shape[:1] + scores.shape[2:]
            values, index = (
                scores.new_empty(shape),
                torch.empty(shape, dtype=torch.long, device=scores.device),
            )
            better = torch.empty(shape, dtype=torch.bool, device=scores.device)
        torch.max(scores, dim=1, out=(values, index))
        if best is None:
            best, best_index = values.clone(), index.clone()
            continue
        torch.gt(values, best, out=better)
        torch.maximum(best, values, out=best)
        torch.where(better, index.add_(start), best_index, out=best_index)
    if best_index is None:
        raise ValueError("no classes to take the argmax over")
    return best_index
