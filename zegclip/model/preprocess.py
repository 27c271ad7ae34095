"""Images in, model input out: read any picture as RGB, resize as evaluation does, normalise.

The test-time geometry is the official one (docs/data.md §5, ``zegclip.data.transforms``): keep the
aspect ratio and make the short side exactly the crop size (no cap on the long side; OpenCV
bilinear on uint8), then ImageNet normalisation on 0-255 RGB.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from zegclip.common.constants import IMAGENET_MEAN, IMAGENET_STD
from zegclip.common.errors import InputError, InputNotFoundError

ImageInput = str | Path | Image.Image | np.ndarray
"""A file path, a PIL image, or an ``(H, W, 3)`` uint8 RGB array (also ``(H, W)`` grey, ``(H, W, 4)``
RGBA, uint16)."""

_READ_ERRORS = (OSError, SyntaxError, ValueError, UnidentifiedImageError, Image.DecompressionBombError)


class ImageReadError(InputError):
    """An input that is not a readable image (names the file and what was expected)."""


def read_image(image: ImageInput) -> np.ndarray:
    """Any supported input -> ``(H, W, 3)`` uint8 RGB.

    Files and PIL images: EXIF orientation applied (the array is the image as viewers show it);
    grey, palette, CMYK, 16-bit (scaled to 8 bits) and float modes converted to RGB; an alpha
    channel is dropped, as evaluation does. Arrays: uint8 or uint16, ``(H, W)``, ``(H, W, 1)``,
    ``(H, W, 3)`` (RGB) or ``(H, W, 4)`` (RGBA).

    Raises:
        FileNotFoundError: a path that does not exist.
        ImageReadError: an undecodable or truncated file, or an array of another shape/dtype.
    """
    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.is_file():
            raise InputNotFoundError(f"image not found: {str(path)!r}")
        try:
            with Image.open(path) as im:
                im.load()  # decode everything now: a truncated file raises here
                return pil_to_rgb(im)
        except _READ_ERRORS as err:
            raise ImageReadError(f"cannot decode image {str(path)!r}: {err} (expected a complete image file)") from err
    if isinstance(image, Image.Image):
        return pil_to_rgb(image)
    if isinstance(image, np.ndarray):
        return array_to_rgb(image)
    if torch.is_tensor(image):
        raise ImageReadError(
            "predict() takes a path, a PIL image or an (H, W, 3) uint8 array; for a normalised "
            "(B, 3, H, W) tensor use model.segment()"
        )
    raise ImageReadError(f"expected a path, a PIL image or an (H, W, 3) uint8 array, got {type(image).__name__}")


def pil_to_rgb(im: Image.Image) -> np.ndarray:
    """A PIL image -> ``(H, W, 3)`` uint8 RGB with its EXIF orientation applied."""
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
        raise ImageReadError(f"expected an (H, W, 3) RGB, (H, W, 4) RGBA or (H, W) grey array, got shape {array.shape}")
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
    """Keep-ratio ``(new_h, new_w)`` whose short side is ``short_side`` (each rounded half up)."""
    factor = short_side / min(height, width)
    return int(height * factor + 0.5), int(width * factor + 0.5)


def resize_short_side(image: np.ndarray, short_side: int) -> np.ndarray:
    """Bilinear keep-ratio resize of ``(H, W, 3)`` uint8 so that the short side is ``short_side``."""
    h, w = image.shape[:2]
    size = short_side_size(h, w, short_side)
    if size == (h, w):
        return image
    return cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def normalize(image: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` uint8 RGB -> ``(3, H, W)`` float32, ImageNet mean/std on 0-255."""
    mean = np.asarray(IMAGENET_MEAN, dtype=np.float32)
    std = np.asarray(IMAGENET_STD, dtype=np.float32)
    pixels = (image.astype(np.float32) - mean) / std
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))


def denormalize(image: torch.Tensor) -> np.ndarray:
    """``(3, H, W)`` normalised tensor -> ``(H, W, 3)`` uint8 RGB."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    pixels = image.detach().float().cpu() * std + mean
    return pixels.clamp(0, 255).round().byte().permute(1, 2, 0).numpy()
