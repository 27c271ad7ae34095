"""Reading images and label maps, and decoding raw label values into class ids."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from zegclip.common.constants import IGNORE_INDEX
from zegclip.common.errors import ConfigError, ImageReadError, InputNotFoundError
from zegclip.common.images import open_image, read_image
from zegclip.data.errors import LabelValueError, MissingFileError


def read_sample_image(path: str | Path) -> np.ndarray:
    """A dataset's image as ``(H, W, 3)`` uint8 RGB (:func:`zegclip.common.images.read_image`), EXIF
    orientation not applied: label maps are drawn on the stored pixels.

    Raises:
        MissingFileError: the file vanished after the split was listed. ImageReadError: it cannot be decoded.
    """
    try:
        return read_image(path, orient=False)
    except InputNotFoundError as err:
        raise MissingFileError(str(err)) from err


def read_label(path: str | Path) -> np.ndarray:
    """Decode a label map to a 2-D array of raw ids: uint8, uint16 for 16-bit maps (PNG or TIFF,
    e.g. A-847 / PC-459), int32 for 32-bit ones.

    Accepts single-channel images (mode ``L``, palette ``P`` read as indices, 16-bit ``I;16`` or
    32-bit ``I``).

    Raises:
        MissingFileError: no such file.
        ImageReadError: if the file cannot be decoded or is not a single-channel id map
            (colour-coded RGB labels are refused rather than guessed).
    """
    try:
        im = open_image(path, "label map", "a complete single-channel PNG or TIFF")
    except InputNotFoundError as err:
        raise MissingFileError(str(err)) from err
    with im:
        mode = im.mode
        if mode in ("L", "P"):
            return np.asarray(im, dtype=np.uint8).copy()
        if mode in ("I;16", "I;16L", "I;16B"):
            return np.asarray(im).astype(np.uint16)
        if mode == "I":
            return np.asarray(im).astype(np.int32)
    raise ImageReadError(
        f"label map {path} has image mode {mode!r}: expected a single-channel id map "
        "(mode 'L', palette 'P' or 16-bit); colour-coded labels must be converted to ids first"
    )


RAW_IGNORE_8BIT = 255
"""The ignore value of 8-bit label maps on disk (VOC, COCO-Stuff, Context, ADE-150, custom)."""
RAW_IGNORE_16BIT = 65535
"""The ignore value of 16-bit label maps on disk (A-847, PC-459; the peers' convention)."""


def make_label_lut(
    num_classes: int,
    reduce_zero_label: bool,
    raw_ignore: int = RAW_IGNORE_8BIT,
    background_class: int | None = None,
) -> np.ndarray:
    """Build the raw-value -> class-id table (int32, ``raw_ignore + 1`` entries, -1 = invalid value).

    ``reduce_zero_label`` (VOC, Context, ADE-150): raw 0 is background -> ignore, raw k (1..C) ->
    k - 1; with ``background_class`` (VOC-20b) raw 0 becomes that class instead and raw 1..C-1 ->
    0..C-2. Otherwise raw k (0..C-1) -> k. Raw ``raw_ignore`` (255 in 8-bit maps, 65535 in 16-bit
    ones) is ignore in every case. Ignore decodes to :data:`~zegclip.common.constants.IGNORE_INDEX`.
    """
    shifted = num_classes - 1 if background_class is not None else num_classes
    top = shifted + 1 if reduce_zero_label else num_classes
    if num_classes < 1 or top > raw_ignore:
        bits = 8 if raw_ignore == RAW_IGNORE_8BIT else 16
        raise ConfigError(
            f"{num_classes} classes do not fit {bits}-bit label maps with {raw_ignore} = ignore "
            f"(reduce_zero_label={reduce_zero_label})"
            + (
                "; more classes need a layout with 16-bit label maps "
                "(65535 = ignore), as ade847 and context459"
                if bits == 8
                else ""
            )
        )
    if background_class is not None and not (reduce_zero_label and background_class == num_classes - 1):
        raise ConfigError(
            f"background_class={background_class} needs reduce_zero_label=true and must be the last "
            f"class ({num_classes - 1})"
        )
    lut = np.full(raw_ignore + 1, -1, dtype=np.int32)
    if reduce_zero_label:
        lut[0] = IGNORE_INDEX if background_class is None else background_class
        lut[1 : shifted + 1] = np.arange(shifted)
    else:
        lut[:num_classes] = np.arange(num_classes)
    lut[raw_ignore] = IGNORE_INDEX
    return lut


def describe_lut(lut: np.ndarray) -> str:
    """Human-readable list of the raw values a table accepts, e.g. '0..20 and 255'."""
    raw_ignore = len(lut) - 1
    valid = np.flatnonzero(lut >= 0)
    main = valid[valid != raw_ignore]
    rng = f"{main.min()}..{main.max()}" if len(main) else "none"
    return f"{rng} and {raw_ignore}"


def decode_label(raw: np.ndarray, lut: np.ndarray, path: str | Path = "<array>") -> np.ndarray:
    """Map raw label values to class ids (uint16, ``IGNORE_INDEX`` = ignore) through ``lut``.

    Raises:
        LabelValueError: naming ``path`` and the offending values, if any pixel holds a value
            the table does not accept.
    """
    if raw.ndim != 2:
        raise LabelValueError(f"label map {path} has shape {raw.shape}: expected (H, W)")
    top = len(lut) - 1
    if raw.dtype not in (np.uint8, np.uint16) or (raw.dtype == np.uint16 and top < 65535):
        if raw.size and (raw.min() < 0 or raw.max() > top):
            bad = np.unique(raw[(raw < 0) | (raw > top)])
            raise LabelValueError(
                f"label map {path} holds values {bad[:10].tolist()} outside the expected ids "
                f"{describe_lut(lut)}"
            )
        raw = raw.astype(np.uint8 if top <= 255 else np.uint16)
    out = lut[raw]
    if (out < 0).any():
        bad = np.unique(raw[out < 0])
        raise LabelValueError(
            f"label map {path} holds values {bad[:10].tolist()} outside the expected ids {describe_lut(lut)}"
        )
    return out.astype(np.uint16)
