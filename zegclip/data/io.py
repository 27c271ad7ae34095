"""Reading images and label maps, and decoding raw label values into class ids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from zegclip.constants import IGNORE_INDEX
from zegclip.data.errors import ImageReadError, LabelValueError, MissingFileError
from zegclip.errors import ConfigError

_READ_ERRORS = (OSError, SyntaxError, ValueError, UnidentifiedImageError, Image.DecompressionBombError)


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file to a uint8 RGB array (H, W, 3).

    EXIF orientation is not applied: label maps are drawn on the stored pixels.

    Raises:
        ImageReadError: if the file cannot be decoded completely (unreadable, truncated).
    """
    try:
        with Image.open(path) as im:
            im.load()  # decodes everything: a truncated file raises here
            if im.mode != "RGB":
                im = im.convert("RGB")
            return np.asarray(im, dtype=np.uint8).copy()
    except FileNotFoundError as e:
        raise MissingFileError(f"image not found: {path}") from e
    except _READ_ERRORS as e:
        raise ImageReadError(f"cannot decode image {path}: {e} (expected a complete JPEG/PNG image)") from e


def read_label(path: str | Path) -> np.ndarray:
    """Decode a label map to a 2-D array of raw ids (uint8, or int32 for 16-bit PNGs).

    Accepts single-channel PNGs (mode ``L``, palette ``P`` read as indices, or 16-bit ``I;16``/``I``).

    Raises:
        ImageReadError: if the file cannot be decoded or is not a single-channel id map
            (colour-coded RGB labels are refused rather than guessed).
    """
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("L", "P"):
                return np.asarray(im, dtype=np.uint8).copy()
            if mode in ("I;16", "I;16L", "I;16B", "I"):
                return np.asarray(im).astype(np.int32)
    except FileNotFoundError as e:
        raise MissingFileError(f"label map not found: {path}") from e
    except _READ_ERRORS as e:
        raise ImageReadError(
            f"cannot decode label map {path}: {e} (expected a complete single-channel PNG)"
        ) from e
    raise ImageReadError(
        f"label map {path} has image mode {mode!r}: expected a single-channel id map "
        "(mode 'L', palette 'P' or 16-bit); colour-coded labels must be converted to ids first"
    )


def make_label_lut(num_classes: int, reduce_zero_label: bool) -> np.ndarray:
    """Build the raw-value -> class-id table (int16, 256 entries, -1 = invalid value).

    ``reduce_zero_label`` (VOC, Context): raw 0 is background -> 255, raw k (1..C) -> k - 1.
    Otherwise raw k (0..C-1) -> k. Raw 255 is ignore (255) in both cases.
    """
    top = num_classes + 1 if reduce_zero_label else num_classes
    if num_classes < 1 or top > IGNORE_INDEX:
        raise ConfigError(
            f"{num_classes} classes do not fit 8-bit label maps with 255 = ignore "
            f"(reduce_zero_label={reduce_zero_label})"
        )
    lut = np.full(256, -1, dtype=np.int16)
    if reduce_zero_label:
        lut[0] = IGNORE_INDEX
        lut[1 : num_classes + 1] = np.arange(num_classes)
    else:
        lut[:num_classes] = np.arange(num_classes)
    lut[IGNORE_INDEX] = IGNORE_INDEX
    return lut


def describe_lut(lut: np.ndarray) -> str:
    """Human-readable list of the raw values a table accepts, e.g. '0..20 and 255'."""
    valid = np.flatnonzero(lut >= 0)
    main = valid[valid != IGNORE_INDEX]
    rng = f"{main.min()}..{main.max()}" if len(main) else "none"
    return f"{rng} and {IGNORE_INDEX}"


def decode_label(raw: np.ndarray, lut: np.ndarray, path: str | Path = "<array>") -> np.ndarray:
    """Map raw label values to class ids (uint8, 255 = ignore) through ``lut``.

    Raises:
        LabelValueError: naming ``path`` and the offending values, if any pixel holds a value
            the table does not accept.
    """
    if raw.ndim != 2:
        raise LabelValueError(f"label map {path} has shape {raw.shape}: expected (H, W)")
    if raw.dtype != np.uint8:
        if raw.size and (raw.min() < 0 or raw.max() > 255):
            bad = np.unique(raw[(raw < 0) | (raw > 255)])
            raise LabelValueError(
                f"label map {path} holds values {bad[:10].tolist()} outside the expected ids {describe_lut(lut)}"
            )
        raw = raw.astype(np.uint8)
    out = lut[raw]
    if (out < 0).any():
        bad = np.unique(raw[out < 0])
        raise LabelValueError(
            f"label map {path} holds values {bad[:10].tolist()} outside the expected ids {describe_lut(lut)}"
        )
    return out.astype(np.uint8)
