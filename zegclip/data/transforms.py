"""Augmentation pipelines (albumentations) matching the official mmsegmentation pipeline.

Train (docs/data.md §5): ratio-range resize on (2048, 512) -> 512 crop with the 0.75 category-ratio rule
-> horizontal flip p 0.5 -> photometric distortion -> ImageNet normalisation -> pad to the crop
size with 0 (image, after normalisation) and ``IGNORE_INDEX`` (label; the official 255, which is
65535 here so that class ids above 254 stay classes).
Test: keep-ratio resize so that the short side is exactly ``short_side`` (no long-side cap) ->
normalisation; the label stays at its original resolution for the metrics.

mmseg's resize, crop and photometric distortion have no exact albumentations equivalent, so they
are small transforms here that draw from the transform's own RNG (``self.random_generator``),
which :meth:`TrainTransform.set_random_seed` seeds for the whole pipeline.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import albumentations as A
import cv2
import numpy as np

from zegclip.common.constants import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD
from zegclip.common.images import normalize, short_side_size


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def keep_ratio_size(h: int, w: int, scale: Sequence[int]) -> tuple[int, int]:
    """mmcv's keep-ratio rescale: the largest size with long side <= max(scale) and short side
    <= min(scale); returns (new_h, new_w), each rounded half up."""
    long_edge, short_edge = max(scale), min(scale)
    factor = min(long_edge / max(h, w), short_edge / min(h, w))
    return int(h * factor + 0.5), int(w * factor + 0.5)


class _Resize(A.DualTransform):
    """Base: resize image bilinearly and mask with nearest neighbour to ``params['size']``."""

    def apply(self, img: np.ndarray, size: tuple[int, int] = (0, 0), **params: Any) -> np.ndarray:
        return cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)

    def apply_to_mask(self, mask: np.ndarray, size: tuple[int, int] = (0, 0), **params: Any) -> np.ndarray:
        return cv2.resize(mask, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)


class RatioRangeResize(_Resize):
    """mmseg ``Resize(img_scale, ratio_range, keep_ratio=True)``.

    r ~ U[ratio_range); target scale = (int(scale[0] r), int(scale[1] r)); scale factor =
    min(long target / long side, short target / short side).
    """

    def __init__(
        self, scale: Sequence[int] = (2048, 512), ratio_range: Sequence[float] = (0.5, 2.0), p: float = 1.0
    ) -> None:
        super().__init__(p=p)
        self.scale = tuple(int(s) for s in scale)
        self.ratio_range = tuple(float(r) for r in ratio_range)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        h, w = params["shape"][:2]
        lo, hi = self.ratio_range
        ratio = self.random_generator.random() * (hi - lo) + lo
        target = (int(self.scale[0] * ratio), int(self.scale[1] * ratio))
        return {"size": keep_ratio_size(h, w, target), "ratio": ratio}

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("scale", "ratio_range")


class ShortSideResize(_Resize):
    """Deterministic keep-ratio resize to an exact short side (the official test resize)."""

    def __init__(self, short_side: int = 512, p: float = 1.0) -> None:
        super().__init__(p=p)
        self.short_side = int(short_side)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        h, w = params["shape"][:2]
        return {"size": short_side_size(h, w, self.short_side)}

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("short_side",)


class CatMaxRatioCrop(A.DualTransform):
    """mmseg ``RandomCrop(crop_size, cat_max_ratio)``.

    Draws a crop (offsets uniform over the valid range; the crop is the whole side where the
    image is smaller). While fewer than two classes are in the crop, or one class covers >=
    ``cat_max_ratio`` of its labelled pixels (``ignore_index`` excluded), draws again, at most
    ``max_tries`` times; the last draw is kept. ``cat_max_ratio >= 1`` disables the rule.
    """

    def __init__(
        self,
        crop_size: int | Sequence[int] = 512,
        cat_max_ratio: float = 0.75,
        ignore_index: int = IGNORE_INDEX,
        max_tries: int = 10,
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        self.crop_size = _pair(crop_size)
        self.cat_max_ratio = float(cat_max_ratio)
        self.ignore_index = int(ignore_index)
        self.max_tries = int(max_tries)

    def _draw(self, h: int, w: int) -> tuple[int, int, int, int]:
        ch, cw = self.crop_size
        y = int(self.random_generator.integers(0, max(h - ch, 0) + 1))
        x = int(self.random_generator.integers(0, max(w - cw, 0) + 1))
        return y, x, min(y + ch, h), min(x + cw, w)

    def accepts(self, crop: np.ndarray) -> bool:
        """True if ``crop`` (a label map) passes the category-ratio rule."""
        values, counts = np.unique(crop, return_counts=True)
        counts = counts[values != self.ignore_index]
        return len(counts) > 1 and counts.max() / counts.sum() < self.cat_max_ratio

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        h, w = params["shape"][:2]
        box = self._draw(h, w)
        mask = data.get("mask")
        tries = 0
        if self.cat_max_ratio < 1.0 and mask is not None:
            for tries in range(1, self.max_tries + 1):  # noqa: B007 - `tries` is reported
                y1, x1, y2, x2 = box
                if self.accepts(mask[y1:y2, x1:x2]):
                    break
                box = self._draw(h, w)
        return {"crop_box": box, "tries": tries}

    def apply(
        self, img: np.ndarray, crop_box: tuple[int, int, int, int] = (0, 0, 0, 0), **params: Any
    ) -> np.ndarray:
        y1, x1, y2, x2 = crop_box
        return img[y1:y2, x1:x2]

    def apply_to_mask(
        self, mask: np.ndarray, crop_box: tuple[int, int, int, int] = (0, 0, 0, 0), **params: Any
    ) -> np.ndarray:
        y1, x1, y2, x2 = crop_box
        return mask[y1:y2, x1:x2]

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("crop_size", "cat_max_ratio", "ignore_index", "max_tries")


class PhotoMetricDistortion(A.ImageOnlyTransform):
    """Port of mmseg ``PhotoMetricDistortion`` on uint8 RGB images.

    In order: brightness (+U(-32, 32)); a fair coin picks whether contrast (x U(0.5, 1.5)) comes
    first or last; saturation (x U(0.5, 1.5) on HSV S); hue (+ an integer delta on OpenCV's 0-180
    H, modulo 180); contrast (if last). Each step applies with p 0.5; every step clips to
    [0, 255] and truncates to uint8 as mmseg does. The hue delta is drawn from
    [-hue_delta, hue_delta) like mmseg's ``np.random.randint`` (upper bound excluded).
    RGB->HSV on an RGB image gives the same HSV as mmseg's BGR->HSV on the BGR image.
    """

    def __init__(
        self,
        brightness_delta: int = 32,
        contrast_range: Sequence[float] = (0.5, 1.5),
        saturation_range: Sequence[float] = (0.5, 1.5),
        hue_delta: int = 18,
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        self.brightness_delta = brightness_delta
        self.contrast_range = tuple(contrast_range)
        self.saturation_range = tuple(saturation_range)
        self.hue_delta = int(hue_delta)

    def get_params(self) -> dict[str, Any]:
        rng = self.random_generator

        def coin() -> bool:
            return bool(rng.integers(2))

        brightness = rng.uniform(-self.brightness_delta, self.brightness_delta) if coin() else None
        contrast_first = bool(rng.integers(2))
        contrast = rng.uniform(*self.contrast_range) if coin() else None
        saturation = rng.uniform(*self.saturation_range) if coin() else None
        hue = int(rng.integers(-self.hue_delta, self.hue_delta)) if coin() else None
        return {
            "brightness": brightness,
            "contrast_first": contrast_first,
            "contrast": contrast,
            "saturation": saturation,
            "hue": hue,
        }

    @staticmethod
    def _convert(img: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
        return np.clip(img.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)

    def apply(
        self,
        img: np.ndarray,
        brightness: float | None = None,
        contrast_first: bool = True,
        contrast: float | None = None,
        saturation: float | None = None,
        hue: int | None = None,
        **params: Any,
    ) -> np.ndarray:
        if img.dtype != np.uint8:
            raise TypeError(
                f"PhotoMetricDistortion expects a uint8 image (before normalisation), got {img.dtype}"
            )
        if brightness is not None:
            img = self._convert(img, beta=brightness)
        if contrast_first and contrast is not None:
            img = self._convert(img, alpha=contrast)
        if saturation is not None:
            hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
            hsv[:, :, 1] = self._convert(hsv[:, :, 1], alpha=saturation)
            img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        if hue is not None:
            hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
            hsv[:, :, 0] = ((hsv[:, :, 0].astype(np.int32) + hue) % 180).astype(np.uint8)
            img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        if not contrast_first and contrast is not None:
            img = self._convert(img, alpha=contrast)
        return img

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("brightness_delta", "contrast_range", "saturation_range", "hue_delta")


class Normalize(A.ImageOnlyTransform):
    """``(pixel - mean) / std`` on uint8 RGB (:func:`zegclip.common.images.normalize`, with the numbers
    of albumentations' ``Normalize(max_pixel_value=1)``): the one normalisation of training,
    evaluation and ``model.predict``."""

    def __init__(
        self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD, p: float = 1.0
    ) -> None:
        super().__init__(p=p)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        return normalize(img, self.mean, self.std)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("mean", "std")


class _SeededTransform:
    """Shared seeding: one numpy Generator and one ``random.Random`` for the whole pipeline."""

    compose: A.Compose

    def set_random_seed(self, seed: int) -> None:
        """Seed the augmentation stream (albumentations ignores global seeds)."""
        self.compose.set_random_state(np.random.default_rng(seed), random.Random(seed))


class TrainTransform(_SeededTransform):
    """Training pipeline: ``(image uint8 RGB, label uint16) -> {image float32 HWC, label, img_size}``.

    ``compose`` runs everything up to normalisation; ``pad`` then pads to the crop size, so that
    ``img_size`` reports the valid region.
    """

    def __init__(
        self,
        crop_size: int | Sequence[int] = 512,
        scale: Sequence[int] = (2048, 512),
        ratio_range: Sequence[float] = (0.5, 2.0),
        cat_max_ratio: float = 0.75,
        flip_prob: float = 0.5,
        photometric: bool = True,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        ignore_index: int = IGNORE_INDEX,
        seed: int | None = None,
    ) -> None:
        crop_h, crop_w = _pair(crop_size)
        steps: list[A.BasicTransform] = [
            RatioRangeResize(scale=scale, ratio_range=ratio_range),
            CatMaxRatioCrop(
                crop_size=(crop_h, crop_w), cat_max_ratio=cat_max_ratio, ignore_index=ignore_index
            ),
            A.HorizontalFlip(p=flip_prob),
        ]
        if photometric:
            steps.append(PhotoMetricDistortion())
        steps.append(Normalize(mean=mean, std=std))
        self.compose = A.Compose(steps)
        self.pad = A.PadIfNeeded(
            min_height=crop_h,
            min_width=crop_w,
            position="top_left",
            border_mode=cv2.BORDER_CONSTANT,
            fill=0,
            fill_mask=ignore_index,
        )
        if seed is not None:
            self.set_random_seed(seed)

    def __call__(self, image: np.ndarray, label: np.ndarray) -> dict[str, Any]:
        out = self.compose(image=image, mask=label)
        img_size = out["image"].shape[:2]
        out = self.pad(image=out["image"], mask=out["mask"])
        return {"image": out["image"], "label": out["mask"], "img_size": img_size}


class TestTransform(_SeededTransform):
    """Test pipeline: resize the image (short side = ``short_side``) and normalise; the label is
    returned untouched (original resolution)."""

    __test__ = False  # not a pytest class

    def __init__(
        self,
        short_side: int = 512,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        self.compose = A.Compose(
            [
                ShortSideResize(short_side=short_side),
                Normalize(mean=mean, std=std),
            ]
        )

    def __call__(self, image: np.ndarray, label: np.ndarray) -> dict[str, Any]:
        out = self.compose(image=image)
        return {"image": out["image"], "label": label, "img_size": out["image"].shape[:2]}


def build_train_transform(
    crop_size: int | Sequence[int] = 512,
    scale: Sequence[int] = (2048, 512),
    ratio_range: Sequence[float] = (0.5, 2.0),
    cat_max_ratio: float = 0.75,
    flip_prob: float = 0.5,
    photometric: bool = True,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    ignore_index: int = IGNORE_INDEX,
    seed: int | None = None,
) -> TrainTransform:
    """The official training pipeline (defaults = docs/data.md §5)."""
    return TrainTransform(
        crop_size=crop_size,
        scale=scale,
        ratio_range=ratio_range,
        cat_max_ratio=cat_max_ratio,
        flip_prob=flip_prob,
        photometric=photometric,
        mean=mean,
        std=std,
        ignore_index=ignore_index,
        seed=seed,
    )


def build_test_transform(
    short_side: int = 512, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> TestTransform:
    """The official test pipeline: short side exactly ``short_side``, then normalisation."""
    return TestTransform(short_side=short_side, mean=mean, std=std)
