"""Images in: the one image reader, the test-time resize and the ImageNet normalisation.

Every layer reads pictures here: the datasets (``orient=False``: label maps are drawn on the stored
pixels), ``model.predict``, the demo and the prediction app (EXIF orientation applied: the image as
viewers show it). The resize and the normalisation are the official test pipeline's (docs/data.md
§5): keep the aspect ratio, make the short side exactly the crop size (OpenCV bilinear on uint8, no
cap on the long side), then ImageNet mean / std on 0-255 RGB, with the arithmetic of
albumentations' ``Normalize`` (a float32 table per channel), so that training, evaluation and
prediction see bit-identical pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from zegclip.common.constants import IMAGENET_MEAN, IMAGENET_STD
from zegclip.common.errors import ImageReadError, InputNotFoundError

ImageInput = str | Path | Image.Image | np.ndarray
"""A file path, a PIL image, or an ``(H, W, 3)`` uint8 RGB array (also ``(H, W)`` grey, ``(H, W, 4)``
RGBA, uint16)."""

READ_ERRORS = (OSError, SyntaxError, ValueError, UnidentifiedImageError, Image.DecompressionBombError)
"""What Pillow raises for a file it cannot decode (unreadable, truncated, not an image, too large)."""

__all__ = [
    "READ_ERRORS",
    "ImageInput",
    "ImageReadError",
    "array_to_rgb",
    "normalize",
    "open_image",
    "pil_to_rgb",
    "read_image",
    "resize_short_side",
    "short_side_size",
]


def open_image(path: str | Path, what: str = "image", expected: str = "a complete image file") -> Image.Image:
    """``path`` fully decoded (a truncated file raises here, not later).

    Raises:
        InputNotFoundError: no such file.
        ImageReadError: the file cannot be decoded (names it and ``expected``).
    """
    if not Path(path).is_file():
        raise InputNotFoundError(f"{what} not found: {str(path)!r}")
    im = None
    try:
        im = Image.open(path)
        im.load()
    except READ_ERRORS as err:
        if im is not None:
            im.close()
        raise ImageReadError(f"cannot decode {what} {str(path)!r}: {err} (expected {expected})") from err
    return im


def read_image(image: ImageInput, *, orient: bool = True) -> np.ndarray:
    """Any supported input -> ``(H, W, 3)`` uint8 RGB.

    Files and PIL images: EXIF orientation applied if ``orient``; grey, palette, CMYK, 16-bit (scaled
    to 8 bits) and float modes converted to RGB; an alpha channel is dropped. Arrays: uint8 or uint16,
    ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` (RGB) or ``(H, W, 4)`` (RGBA).

    Raises:
        InputNotFoundError: a path that does not exist.
        ImageReadError: an undecodable or truncated file, or an array of another shape/dtype.
    """
    if isinstance(image, (str, Path)):
        with open_image(image) as im:
            return pil_to_rgb(im, orient=orient)
    if isinstance(image, Image.Image):
        return pil_to_rgb(image, orient=orient)
    if isinstance(image, np.ndarray):
        return array_to_rgb(image)
    if type(image).__name__ == "Tensor":  # no torch import here: the shared layer knows no framework
        raise ImageReadError(
            "predict() takes a path, a PIL image or an (H, W, 3) uint8 array; for a normalised "
            "(B, 3, H, W) tensor use model.segment()"
        )
    raise ImageReadError(
        f"expected a path, a PIL image or an (H, W, 3) uint8 array, got {type(image).__name__}"
    )


def pil_to_rgb(im: Image.Image, orient: bool = True) -> np.ndarray:
    """A PIL image -> ``(H, W, 3)`` uint8 RGB (with its EXIF orientation applied if ``orient``)."""
    if orient:
        im = ImageOps.exif_transpose(im) or im
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return array_to_rgb(np.asarray(im))
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.asarray(im, dtype=np.uint8).copy()


def array_to_rgb(array: np.ndarray) -> np.ndarray:
    """uint8/uint16/int32/float array (grey, RGB or RGBA) -> ``(H, W, 3)`` uint8 RGB.

    uint16 keeps its top 8 bits (as do other integer arrays with values above 255, e.g. PIL's
    32-bit mode ``I``); float arrays are read as 0-1 if their maximum is <= 1, else as 0-255.
    """
    if array.ndim == 3 and array.shape[2] in (1, 3, 4):
        array = array[..., :3] if array.shape[2] != 1 else array[..., 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)) or 0 in array.shape:
        raise ImageReadError(
            f"expected an (H, W, 3) RGB, (H, W, 4) RGBA or (H, W) grey array, got shape {array.shape}"
        )
    if array.dtype == np.uint8:
        out = array
    elif array.dtype == np.uint16:
        out = (array >> 8).astype(np.uint8)
    elif array.dtype.kind in "iu" and array.min() >= 0 and array.max() <= 65535:  # e.g. PIL mode "I"
        out = (array >> 8).astype(np.uint8) if array.max() > 255 else array.astype(np.uint8)
    elif array.dtype.kind == "f":
        scale = 255.0 if float(np.nanmax(array)) <= 1.0 else 1.0
        out = np.clip(np.nan_to_num(array) * scale, 0, 255).round().astype(np.uint8)
    else:
        raise ImageReadError(f"expected a uint8 (or uint16) image array, got dtype {array.dtype}")
    if out.ndim == 2:
        out = np.repeat(out[..., None], 3, axis=2)
    return np.ascontiguousarray(out)


def short_side_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """Keep-ratio ``(new_h, new_w)`` whose short side is ``short_side`` (each rounded half up; no cap
    on the long side)."""
    factor = short_side / min(height, width)
    return int(height * factor + 0.5), int(width * factor + 0.5)


def resize_short_side(image: np.ndarray, short_side: int) -> np.ndarray:
    """Bilinear keep-ratio resize of ``(H, W, 3)`` uint8 so that the short side is ``short_side``."""
    h, w = image.shape[:2]
    size = short_side_size(h, w, short_side)
    if size == (h, w):
        return image
    return cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def normalize(
    image: np.ndarray, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB -> ``(H, W, 3)`` float32 ``(pixel - mean) / std``.

    Computed as albumentations' ``Normalize(max_pixel_value=1)`` does for uint8 (a float32 table of
    ``(v - mean) * (1 / std)`` per channel and value), so the training, evaluation and prediction
    pipelines give bit-identical inputs.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != len(mean):
        raise ImageReadError(
            f"normalize expects an (H, W, {len(mean)}) uint8 image, got {image.dtype} {image.shape}"
        )
    mean32 = np.asarray(mean, dtype=np.float32).reshape(-1, 1)
    scale32 = np.reciprocal(np.asarray(std, dtype=np.float32)).reshape(-1, 1)
    table = (np.arange(256, dtype=np.float32) - mean32) * scale32  # (3, 256)
    return cv2.merge([cv2.LUT(image[..., c], table[c]) for c in range(len(mean))])
