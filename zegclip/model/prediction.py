"""The result of :meth:`zegclip.ZegCLIP.predict`: a label map at the image's size and its helpers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from zegclip.common import palette as drawing
from zegclip.common.atomic import write_file

MAX_PALETTE_CLASSES = 256
"""Label PNGs are palette images up to this many classes, 16-bit grey PNGs beyond."""


@dataclass
class Prediction:
    """One segmented image.

    Attributes:
        image: the input as RGB ``(H, W, 3)`` uint8 (EXIF orientation applied).
        label: class index per pixel ``(H, W)`` int64, at the image's own size.
        class_names: the vocabulary ``label`` indexes.
        scores: calibrated scores ``(C, H, W)`` float32 on the CPU if requested, else None.
        source: the file the image came from, if any.
    """

    image: np.ndarray
    label: np.ndarray
    class_names: list[str]
    scores: torch.Tensor | None = None
    source: str | None = None

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)`` of the image and of the label map."""
        return int(self.label.shape[0]), int(self.label.shape[1])

    def shares(self) -> dict[str, float]:
        """Pixel share (fraction of the image) of every class present, largest first."""
        return {name: share for _, name, share in drawing.legend_entries(self.label, self.class_names)}

    def overlay(self, alpha: float = 0.5, legend: bool = True, min_side: int = 256) -> Image.Image:
        """The image with class colours blended in and a legend (colour, name, pixel share) of the
        classes present. Images with a short side under ``min_side`` are enlarged by an integer
        factor so the legend stays readable."""
        return Image.fromarray(
            drawing.overlay(self.image, self.label, self.class_names, alpha, legend, min_side)
        )

    def label_image(self) -> Image.Image:
        """The label map as a PNG-ready image: palette mode (pixel value = class index, colours of
        :func:`zegclip.common.palette.palette`) up to 256 classes, 16-bit grey beyond."""
        num_classes = len(self.class_names)
        if num_classes > MAX_PALETTE_CLASSES:
            return Image.fromarray(self.label.astype(np.uint16))
        height, width = self.size
        im = Image.frombytes("P", (width, height), np.ascontiguousarray(self.label, dtype=np.uint8).tobytes())
        colours = np.zeros((256, 3), dtype=np.uint8)
        colours[:num_classes] = drawing.palette(num_classes)
        im.putpalette(colours.ravel().tolist())
        return im

    def save(
        self, label: str | Path | None = None, overlay: str | Path | None = None, **overlay_args: Any
    ) -> None:
        """Write the label PNG and/or the overlay (format from the file extension)."""
        if label is None and overlay is None:
            raise ValueError("save() needs label=PATH and/or overlay=PATH")
        for path, make in ((label, self.label_image), (overlay, lambda: self.overlay(**overlay_args))):
            if path is None:
                continue
            path = Path(path)
            image, kind = make(), Image.registered_extensions().get(path.suffix.lower(), "PNG")
            write_file(
                path, lambda f, im=image, kind=kind: im.save(f, format=kind), what="prediction", fsync=False
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: file, size, and the classes present with their pixel share."""
        height, width = self.size
        return {
            "file": self.source,
            "height": height,
            "width": width,
            "classes": [
                {"index": index, "name": name, "share": round(share, 6)}
                for index, name, share in drawing.legend_entries(self.label, self.class_names)
            ],
        }
