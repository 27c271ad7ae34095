"""Augmentation invariants: shapes, pads, label values, the resize / crop rules, the photometric port."""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np
import pytest

from zegclip.data import (
    IGNORE_INDEX,
    IMAGENET_MEAN,
    IMAGENET_STD,
    CatMaxRatioCrop,
    PhotoMetricDistortion,
    RatioRangeResize,
    build_test_transform,
    build_train_transform,
)
from zegclip.data.transforms import keep_ratio_size, short_side_size

RNG = np.random.default_rng(0)
IMG = RNG.integers(0, 256, (40, 60, 3), dtype=np.uint8)
LAB = np.repeat(np.array([0, 3, 7, IGNORE_INDEX], dtype=np.uint16), 15)[None].repeat(
    40, 0
)  # as datasets emit


def test_train_output_shapes_pads_and_label_values():
    t = build_train_transform(seed=1)
    for _ in range(8):
        out = t(IMG, LAB)
        assert out["image"].shape == (512, 512, 3) and out["image"].dtype == np.float32
        assert out["label"].shape == (512, 512) and out["label"].dtype == np.uint16
        assert set(np.unique(out["label"])) <= {0, 3, 7, IGNORE_INDEX}
        h, w = out["img_size"]
        assert 0 < h <= 512 and 0 < w <= 512
        assert (out["image"][h:] == 0).all() and (out["image"][:, w:] == 0).all()
        assert (out["label"][h:] == IGNORE_INDEX).all() and (out["label"][:, w:] == IGNORE_INDEX).all()


def test_small_resize_is_padded_with_zero_after_normalisation():
    # r = 0.5 -> target (1024, 256); factor = min(1024/60, 256/40) = 6.4 -> 256 x 384, below the crop
    t = build_train_transform(ratio_range=(0.5, 0.5), seed=0)
    out = t(IMG, LAB)
    assert out["img_size"] == (256, 384)
    assert (out["image"][256:] == 0).all() and (out["image"][:, 384:] == 0).all()
    assert (out["label"][256:] == IGNORE_INDEX).all() and (out["label"][:, 384:] == IGNORE_INDEX).all()
    assert (out["label"][:256, :384] != IGNORE_INDEX).any()


def test_flip_and_normalisation_exact():
    # scale (60, 40) with r = 1 keeps 40x60; a 64 crop takes all; flip p 1; no photometric distortion
    t = build_train_transform(
        crop_size=64, scale=(60, 40), ratio_range=(1, 1), flip_prob=1.0, photometric=False
    )
    out = t(IMG, LAB)
    np.testing.assert_array_equal(out["label"][:40, :60], LAB[:, ::-1])
    expected = (IMG[:, ::-1].astype(np.float32) - np.array(IMAGENET_MEAN, np.float32)) / np.array(
        IMAGENET_STD, np.float32
    )
    np.testing.assert_allclose(out["image"][:40, :60], expected, atol=1e-5)
    assert (out["image"][40:] == 0).all() and (out["label"][:, 60:] == IGNORE_INDEX).all()


def test_ratio_range_resize_rule():
    tr = RatioRangeResize(scale=(2048, 512), ratio_range=(0.5, 2.0))
    c = A.Compose([tr], seed=3)
    ratios = []
    for _ in range(30):
        out = c(image=IMG, mask=LAB)
        r = tr.params["ratio"]
        ratios.append(r)
        target = (int(2048 * r), int(512 * r))
        factor = min(max(target) / 60, min(target) / 40)
        assert out["image"].shape[:2] == (int(40 * factor + 0.5), int(60 * factor + 0.5))
        assert out["mask"].shape == out["image"].shape[:2]
        assert set(np.unique(out["mask"])) <= {0, 3, 7, IGNORE_INDEX}  # nearest neighbour
    assert min(ratios) >= 0.5 and max(ratios) < 2.0 and max(ratios) - min(ratios) > 0.8
    # the long-side limit binds for very elongated images
    assert keep_ratio_size(100, 1000, (2048, 512)) == (205, 2048)
    assert keep_ratio_size(500, 375, (2048, 512)) == (683, 512)  # short side binds


def test_cat_max_ratio_rule():
    crop = CatMaxRatioCrop(crop_size=16, cat_max_ratio=0.75)
    assert crop.accepts(np.array([IGNORE_INDEX] * 90 + [1] * 5 + [2] * 5))  # ignore is excluded
    assert not crop.accepts(np.array([IGNORE_INDEX] * 90 + [1] * 10))  # a single class
    assert not crop.accepts(np.array([0] * 76 + [1] * 24))
    assert crop.accepts(np.array([0] * 74 + [1] * 26))
    # class 0 fills x < 48; alternating columns of classes 1 / 2 fill x >= 48:
    # a 16-wide crop passes iff x >= 37
    mask = np.zeros((16, 64), np.uint8)
    mask[:, 48::2], mask[:, 49::2] = 1, 2
    image = np.zeros((16, 64, 3), np.uint8)

    def pass_rate(ratio: float) -> float:
        t = CatMaxRatioCrop(crop_size=16, cat_max_ratio=ratio)
        c = A.Compose([t], seed=0)
        passed = 0
        for _ in range(300):
            out = c(image=image, mask=mask)
            assert out["mask"].shape == (16, 16)
            ok = crop.accepts(out["mask"])
            # every crop either passes or is the draw kept after 10 failed checks
            assert ok or t.params["tries"] == 10 or ratio >= 1
            passed += ok
        return passed / 300

    with_rule, without = pass_rate(0.75), pass_rate(1.0)
    assert with_rule > 0.85 and without < 0.4


def test_photometric_distortion_steps():
    img = RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    pmd = PhotoMetricDistortion()
    none = dict(brightness=None, contrast=None, saturation=None, hue=None, contrast_first=True)
    np.testing.assert_array_equal(pmd.apply(img, **none), img)
    # brightness: clip to [0, 255] then truncate to uint8, as mmseg
    out = pmd.apply(img, **{**none, "brightness": 20.7})
    np.testing.assert_array_equal(out, np.clip(img.astype(np.float32) + 20.7, 0, 255).astype(np.uint8))
    # hue: OpenCV 0-180 units, modulo 180
    out = pmd.apply(img, **{**none, "hue": 17})
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
    hsv[..., 0] = (hsv[..., 0].astype(int) + 17) % 180
    np.testing.assert_array_equal(out, cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB))
    # saturation scales S only
    out = pmd.apply(img, **{**none, "saturation": 1.4})
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
    hsv[..., 1] = np.clip(hsv[..., 1].astype(np.float32) * 1.4, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(out, cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB))
    # the order of contrast matters: first vs last differ
    a = pmd.apply(img, **{**none, "contrast": 1.5, "hue": 10, "contrast_first": True})
    b = pmd.apply(img, **{**none, "contrast": 1.5, "hue": 10, "contrast_first": False})
    assert a.dtype == np.uint8 and not np.array_equal(a, b)
    with pytest.raises(TypeError, match="uint8"):
        pmd.apply(img.astype(np.float32), **none)


def test_photometric_distortion_parameter_distribution():
    pmd = PhotoMetricDistortion()
    pmd.set_random_seed(0)
    draws = [pmd.get_params() for _ in range(2000)]
    for key, lo, hi in (
        ("brightness", -32, 32),
        ("contrast", 0.5, 1.5),
        ("saturation", 0.5, 1.5),
        ("hue", -18, 17),
    ):
        vals = [d[key] for d in draws if d[key] is not None]
        assert 0.45 < len(vals) / len(draws) < 0.55  # each step p 0.5
        assert lo <= min(vals) and max(vals) <= hi
    assert {d["hue"] for d in draws if d["hue"] is not None} == set(range(-18, 18))
    assert 0.45 < np.mean([d["contrast_first"] for d in draws]) < 0.55


def test_test_transform_short_side_and_label_untouched():
    t = build_test_transform(512)
    out = t(IMG, LAB)
    assert out["image"].shape == (512, 768, 3) and out["img_size"] == (512, 768)
    assert out["label"] is LAB
    tall = RNG.integers(0, 256, (50, 30, 3), dtype=np.uint8)
    assert t(tall, LAB)["image"].shape == (853, 512, 3)
    assert short_side_size(10, 1000, 8) == (8, 800)  # no cap on the long side
    assert build_test_transform(8)(RNG.integers(0, 256, (10, 1000, 3), dtype=np.uint8), LAB)[
        "image"
    ].shape == (8, 800, 3)


def test_seed_reproduces_and_differs():
    t = build_train_transform(crop_size=64, scale=(128, 32))
    t.set_random_seed(5)
    a = [t(IMG, LAB)["image"] for _ in range(3)]
    t.set_random_seed(5)
    b = [t(IMG, LAB)["image"] for _ in range(3)]
    t.set_random_seed(6)
    c = [t(IMG, LAB)["image"] for _ in range(3)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    assert not np.array_equal(a[0], a[1])
