"""Test-time augmentation (multi-scale + flip, mmseg's ``aug_test``): identities, an analytic
case, the views it scores, and ``ZegCLIP.segment`` / ``ZegCLIPModule`` wiring."""

from __future__ import annotations

import pytest
import torch

from zegclip.model.inference import multi_scale_flip, scaled_size

SCALES = [0.5, 0.75, 1.0, 1.25, 1.5]


def ramp(views: list[torch.Tensor]):
    """A score function whose output is the horizontal position ``(x + 0.5) / W`` of each view."""

    def score(images: torch.Tensor) -> torch.Tensor:
        views.append(images.clone())
        b, _, h, w = images.shape
        x = (torch.arange(w, dtype=torch.float64) + 0.5) / w
        return x.expand(b, 1, h, w).clone()

    return score


def test_scaled_size_rounds_halves_up():
    assert scaled_size(64, 64, 0.75) == (48, 48)
    assert scaled_size(5, 7, 0.5) == (3, 4)  # 2.5 -> 3, 3.5 -> 4 (mmcv's int(x + 0.5))
    assert scaled_size(1, 1, 0.1) == (1, 1)


def test_one_scale_without_flip_is_the_plain_score():
    images = torch.randn(2, 3, 20, 30)
    calls: list[torch.Tensor] = []
    out = multi_scale_flip(ramp(calls), images, [1.0], flip=False)
    assert len(calls) == 1 and torch.equal(calls[0], images)
    assert torch.equal(out, ramp([])(images))


def test_views_are_the_scaled_and_mirrored_images():
    images = torch.randn(1, 3, 64, 64)
    calls: list[torch.Tensor] = []
    multi_scale_flip(ramp(calls), images, SCALES, flip=True)
    assert [tuple(v.shape[-2:]) for v in calls] == [(s, s) for s in (32, 32, 48, 48, 64, 64, 80, 80, 96, 96)]
    for plain, mirrored in zip(calls[0::2], calls[1::2]):
        assert torch.equal(mirrored, plain.flip(-1))
    assert torch.equal(calls[4], images)  # scale 1.0 is the input itself, not a resampled copy
    expected = torch.nn.functional.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False)
    assert torch.equal(calls[0], expected)


def test_flip_average_of_a_ramp_is_constant():
    """A view's ramp and its mirrored view's ramp, mirrored back, sum to 1 at every pixel and scale."""
    out = multi_scale_flip(ramp([]), torch.zeros(1, 3, 10, 14), SCALES, flip=True)
    assert torch.allclose(out, torch.full_like(out, 0.5), atol=1e-12)


def test_multi_scale_average_of_a_ramp_is_analytic():
    """Bilinear resizing (align_corners=False) reproduces a linear ramp except where it clamps at the
    border: a view of width w, resized back to W, holds clamp((x + 0.5) / W, 0.5 / w, 1 - 0.5 / w)."""
    width, scales = 20, [0.5, 0.75, 1.0, 2.0]
    out = multi_scale_flip(ramp([]), torch.zeros(1, 3, 6, width), scales, flip=False)
    x = (torch.arange(width, dtype=torch.float64) + 0.5) / width
    expected = torch.stack(
        [x.clamp(0.5 / w, 1 - 0.5 / w) for w in (scaled_size(6, width, s)[1] for s in scales)]
    ).mean(0)
    assert torch.allclose(out[0, 0], expected.expand(6, width), atol=1e-12)


@pytest.mark.parametrize("scales", [[], [0.0], [1.0, -0.5]])
def test_bad_scales_are_rejected(scales):
    with pytest.raises(ValueError, match="scales must be a non-empty list of positive numbers"):
        multi_scale_flip(ramp([]), torch.zeros(1, 3, 8, 8), scales)


@pytest.fixture(scope="module")
def model(tiny_eval_model):
    return tiny_eval_model


NAMES = ["cat", "dog", "grass"]


@pytest.mark.parametrize("mode", ["slide", "whole"])
def test_segment_scale_one_equals_plain_path(model, mode):
    images = torch.randn(2, 3, 70, 101)
    plain = model.segment(images, NAMES, seen=[0], mode=mode)
    assert torch.equal(model.segment(images, NAMES, seen=[0], mode=mode, scales=[1.0], flip=False), plain)
    assert torch.equal(model.segment(images, NAMES, seen=[0], mode=mode, scales=None, flip=False), plain)


@pytest.mark.parametrize(("mode", "size"), [("whole", (64, 90)), ("slide", (64, 96))])
def test_segment_flip_is_equivariant(model, mode, size):
    """Scoring the mirrored image with flip=True gives the mirrored result (slide: on a window grid
    that is symmetric, 96 = windows at 0 and 32)."""
    images = torch.randn(1, 3, *size)
    kwargs = {"seen": [1], "mode": mode, "crop": 64, "stride": 53}
    one = model.segment(images, NAMES, flip=True, **kwargs)
    mirrored = model.segment(images.flip(-1), NAMES, flip=True, **kwargs)
    assert torch.equal(mirrored, one.flip(-1))
    assert not torch.allclose(one, model.segment(images, NAMES, **kwargs))  # the mirror view counts
    multi = model.segment(images, NAMES, scales=[0.75, 1.0, 1.5], flip=True, **kwargs)
    multi_mirrored = model.segment(images.flip(-1), NAMES, scales=[0.75, 1.0, 1.5], flip=True, **kwargs)
    assert torch.allclose(multi_mirrored, multi.flip(-1), atol=1e-6)


def test_segment_scales_below_one_give_images_smaller_than_the_crop(model):
    """A 64-pixel image at 0.5 is one 32-pixel window (no padding, as mmseg 0.24 / official ZegCLIP)."""
    images = torch.randn(2, 3, 64, 64)
    slide = model.segment(images, NAMES, seen=[0], scales=[0.5], crop=64)
    small = torch.nn.functional.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False)
    whole_small = model.segment(small, NAMES, seen=[0], mode="whole")
    expected = torch.nn.functional.interpolate(
        whole_small, size=(64, 64), mode="bilinear", align_corners=False
    )
    assert slide.shape == (2, 3, 64, 64)
    assert torch.allclose(slide, expected, atol=1e-6)


def test_segment_averages_the_views(model):
    images = torch.randn(1, 3, 64, 64)
    scales = [0.5, 1.0, 1.5]
    got = model.segment(images, NAMES, mode="whole", scales=scales, flip=True)
    views = []
    for s in scales:
        size = scaled_size(64, 64, s)
        scaled = torch.nn.functional.interpolate(images, size=size, mode="bilinear", align_corners=False)
        for mirrored in (False, True):
            v = model.segment(scaled.flip(-1) if mirrored else scaled, NAMES, mode="whole")
            v = v.flip(-1) if mirrored else v
            views.append(
                torch.nn.functional.interpolate(v, size=(64, 64), mode="bilinear", align_corners=False)
            )
    assert torch.allclose(got, torch.stack(views).mean(0), atol=1e-6)


def test_module_predict_scores_passes_the_evaluation_options(model):
    from zegclip.training.module import ZegCLIPModule

    evaluation = {"mode": "whole", "scales": [0.5, 1.0], "flip": True, "seen_bias": 0.1}
    module = ZegCLIPModule(
        model_config=model.config.to_dict(),
        class_names=NAMES,
        seen=[0, 1],
        unseen=[2],
        evaluation=evaluation,
        model=model,
    )
    images = torch.randn(1, 3, 64, 64)
    got = module.predict_scores(images, (64, 64))
    expected = model.segment(
        images, NAMES, seen=[0, 1], seen_bias=0.1, mode="whole", scales=[0.5, 1.0], flip=True
    )
    assert torch.allclose(got, expected, atol=1e-6)
    plain = ZegCLIPModule(
        model_config=model.config.to_dict(), class_names=NAMES, seen=[0, 1], unseen=[2], model=model
    )
    assert plain.evaluation["scales"] is None and plain.evaluation["flip"] is False
    assert not torch.allclose(plain.predict_scores(images, (64, 64)), got)
