"""Inference: mmseg's window rule, sliding-window averaging, calibration, and ``segment`` shapes."""

from __future__ import annotations

import pytest
import torch

from zegclip.model.inference import calibrate, sliding_window, window_starts


def mmseg_starts(size: int, crop: int, stride: int) -> list[int]:
    """mmseg's slide_inference, one axis: grid count, then each window clamped to the border."""
    grids = max(size - crop + stride - 1, 0) // stride + 1
    starts = []
    for i in range(grids):
        y1 = i * stride
        y2 = min(y1 + crop, size)
        starts.append(max(y2 - crop, 0))
    return starts


@pytest.mark.parametrize("crop", [1, 5, 64, 512])
@pytest.mark.parametrize("stride", [1, 3, 43, 426, 512])
def test_window_starts_match_mmseg(crop, stride):
    for size in [1, 2, 4, 5, 6, 40, 63, 64, 65, 96, 107, 128, 511, 512, 513, 683, 1000, 2048]:
        assert window_starts(size, crop, stride) == mmseg_starts(size, crop, stride), (size, crop, stride)


def test_window_starts_examples():
    assert window_starts(512, 512, 426) == [0]
    assert window_starts(683, 512, 426) == [0, 171]  # short side 512, long 683: 2 windows, last clamped
    assert window_starts(1000, 512, 426) == [0, 426, 488]
    assert window_starts(96, 64, 43) == [0, 32]
    assert window_starts(40, 64, 43) == [0]  # smaller than the crop: one window, the whole axis


def fake_score_fn(num_classes: int):
    """Position-dependent scores of each window (a fixed convolution), one window at a time or batched."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, num_classes, 3, padding=1)

    @torch.no_grad()
    def score(windows: torch.Tensor) -> torch.Tensor:
        calls.append(windows.shape[0])
        return torch.sigmoid(conv(windows))

    calls: list[int] = []
    return score, calls


def naive_sliding_window(score_fn, images, num_classes, crop, stride):
    b, _, h, w = images.shape
    out = torch.zeros(b, num_classes, h, w)
    count = torch.zeros(b, 1, h, w)
    for y in mmseg_starts(h, crop, stride):
        for x in mmseg_starts(w, crop, stride):
            window = images[:, :, y : y + crop, x : x + crop]
            for i in range(b):  # one window of one image at a time
                out[i, :, y : y + crop, x : x + crop] += score_fn(window[i : i + 1])[0]
                count[i, :, y : y + crop, x : x + crop] += 1
    assert count.min() >= 1
    return out / count


@pytest.mark.parametrize("window_batch", [1, 2, 3, 5, 100])
@pytest.mark.parametrize(
    ("size", "crop", "stride"),
    [((70, 101), 64, 43), ((40, 50), 64, 43), ((32, 90), 32, 21), ((64, 64), 64, 43)],
)
def test_sliding_window_equals_naive_loop(window_batch, size, crop, stride):
    images = torch.randn(2, 3, *size)
    score, calls = fake_score_fn(4)
    expected = naive_sliding_window(score, images, 4, crop, stride)
    calls.clear()
    got = sliding_window(score, images, 4, crop, stride, window_batch=window_batch)
    assert got.shape == (2, 4, *size)
    assert torch.allclose(got, expected, atol=1e-6)
    n_windows = len(window_starts(size[0], crop, stride)) * len(window_starts(size[1], crop, stride))
    assert sum(calls) == 2 * n_windows  # every window of every image encoded exactly once
    assert max(calls) <= max(window_batch, 2)


def test_sliding_window_rejects_bad_crop():
    score, _ = fake_score_fn(2)
    with pytest.raises(ValueError, match="crop and stride must be positive"):
        sliding_window(score, torch.randn(1, 3, 8, 8), 2, crop=0, stride=4)


def test_sliding_window_rejects_stride_larger_than_crop():
    """A stride above the crop would leave columns no window covers (NaN averages): refused, naming
    both values; a stride equal to the crop (windows that touch) still covers every pixel."""
    score, _ = fake_score_fn(2)
    assert window_starts(90, 32, 43) == [0, 43, 58]  # what it would run: columns 32-42 in no window
    with pytest.raises(
        ValueError, match=r"^stride \(43\) larger than crop \(32\) would leave pixels no window covers$"
    ):
        sliding_window(score, torch.randn(1, 3, 32, 90), 2, crop=32, stride=43)
    out = sliding_window(score, torch.randn(1, 3, 32, 90), 2, crop=32, stride=32)
    assert out.shape == (1, 2, 32, 90) and torch.isfinite(out).all()


def test_calibrate():
    logits = torch.randn(2, 5, 6, 7) * 4
    scores = calibrate(logits, seen=[0, 3], seen_bias=0.1)
    prob = logits.sigmoid()
    assert torch.allclose(scores[:, [0, 3]], prob[:, [0, 3]] - 0.1, atol=1e-7)
    assert torch.equal(scores[:, [1, 2, 4]], prob[:, [1, 2, 4]])  # unseen channels untouched
    assert torch.equal(calibrate(logits, None), prob)
    assert torch.equal(calibrate(logits, []), prob)
    assert torch.equal(calibrate(logits, [0, 3], seen_bias=0.0), prob)
    assert torch.allclose(calibrate(logits, [1], seen_bias=0.25)[:, 1], prob[:, 1] - 0.25, atol=1e-7)


@pytest.fixture(scope="module")
def model(tiny_eval_model):
    return tiny_eval_model


NAMES = ["cat", "dog", "grass"]


@pytest.mark.parametrize("mode", ["slide", "whole"])
@pytest.mark.parametrize("size", [(48, 80), (100, 70), (64, 130)])
def test_segment_shapes_non_square(model, mode, size):
    images = torch.randn(2, 3, *size)
    scores = model.segment(images, NAMES, seen=[0], mode=mode)
    assert scores.shape == (2, 3, *size) and scores.dtype == torch.float32
    assert torch.isfinite(scores).all() and not scores.requires_grad
    assert scores[:, 1:].min() >= 0 and scores[:, 1:].max() <= 1  # sigmoid scores, no offset on unseen
    assert scores[:, 0].min() >= -0.1 and scores[:, 0].max() <= 0.9


def test_segment_slide_equals_naive_loop_over_windows(model):
    images = torch.randn(2, 3, 70, 101)
    text = model.class_embeddings(NAMES)

    def one_window(window: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model.scores(window, text, [0, 2], 0.1)

    expected = naive_sliding_window(one_window, images, 3, 64, 43)
    for window_batch in (1, 8):  # one window per pass; all windows of both images in one pass
        got = model.segment(images, NAMES, seen=[0, 2], crop=64, stride=43, window_batch=window_batch)
        assert torch.allclose(got, expected, atol=1e-5)


def test_segment_image_smaller_than_crop(model):
    images = torch.randn(1, 3, 40, 50)
    slide = model.segment(images, NAMES, seen=[1])
    whole = model.segment(images, NAMES, seen=[1], mode="whole")
    assert slide.shape == (1, 3, 40, 50)
    assert torch.allclose(slide, whole, atol=1e-6)  # one window: the whole image


def test_segment_default_stride_and_seen_offset(model):
    images = torch.randn(1, 3, 64, 150)
    default = model.segment(images, NAMES)
    explicit = model.segment(images, NAMES, crop=64, stride=53)  # 5/6 of the crop, like 426 for 512
    assert torch.equal(default, explicit)
    offset = model.segment(images, NAMES, seen=[0, 1])
    assert torch.allclose(offset[:, :2], default[:, :2] - 0.1, atol=1e-6)
    assert torch.allclose(offset[:, 2], default[:, 2], atol=1e-6)


def test_segment_with_text_embeddings_and_metadata_names(model):
    images = torch.randn(1, 3, 64, 64)
    by_name = model.segment(images, NAMES, mode="whole")
    by_emb = model.segment(images, text_embeddings=model.class_embeddings(NAMES), mode="whole")
    assert torch.equal(by_name, by_emb)
    model.metadata = {"class_names": NAMES}
    try:
        assert torch.equal(model.segment(images, mode="whole"), by_name)
    finally:
        model.metadata = {}
    with pytest.raises(ValueError, match="mode must be 'slide' or 'whole'"):
        model.segment(images, NAMES, mode="tiles")
