"""Evaluation a chunk of classes at a time (zegclip/model/chunked.py) equals the full-score path exactly."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from zegclip.model import chunked
from zegclip.model.chunked import class_chunks

CLASSES = 131  # > 2 x 64: chunks of 64 (aligned), and a tail


@pytest.fixture(autouse=True)
def _threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def text(tiny_eval_model):
    torch.manual_seed(1)
    return F.normalize(torch.randn(CLASSES, tiny_eval_model.embed_dim), dim=-1)


def full_path(model, images, text, out_size, **kwargs):
    scores = model.segment(images, text_embeddings=text, **kwargs)
    return (
        scores
        if out_size is None
        else F.interpolate(scores, size=out_size, mode="bilinear", align_corners=False)
    )


CASES = [
    # (batch, H, W, mode, scales, flip, out_size)
    (1, 64, 64, "whole", None, False, None),
    (2, 64, 107, "slide", None, False, (75, 120)),  # two windows, resized to an "original" size
    (1, 150, 97, "slide", None, False, (301, 190)),  # 2 x 3 windows
    (2, 83, 64, "whole", None, True, None),  # not the crop size: resized twice
    (1, 64, 107, "slide", None, False, (64, 107)),  # resized to its own size (skipped: the identity)
    (1, 64, 107, "slide", [0.75, 1.0, 1.5], True, (100, 160)),  # TTA: 6 views
]


@pytest.mark.parametrize(("batch", "height", "width", "mode", "scales", "flip", "out_size"), CASES)
@pytest.mark.parametrize("max_bytes", [2**16, 2**30])  # small chunks / one chunk of all classes
def test_chunks_are_the_full_scores_bit_for_bit(
    tiny_eval_model, text, batch, height, width, mode, scales, flip, out_size, max_bytes, threads=1
):
    torch.set_num_threads(threads)
    torch.manual_seed(2)
    images = torch.randn(batch, 3, height, width)
    kwargs = {
        "seen": [0, 5, 64, 130],
        "seen_bias": 0.1,
        "mode": mode,
        "crop": 64,
        "stride": 43,
        "scales": scales,
        "flip": flip,
    }
    full = full_path(tiny_eval_model, images, text, out_size, **kwargs)
    chunks = list(
        tiny_eval_model.segment_chunks(
            images, text_embeddings=text, out_size=out_size, max_bytes=max_bytes, **kwargs
        )
    )
    assert len(chunks) == (
        1 if max_bytes == 2**30 else 2
    )  # small maps: chunks of 64 (the last 3 join the 2nd)
    assert torch.equal(torch.cat([c[2] for c in chunks], dim=1), full)
    # evaluation's variant: each chunk written into buffers the next chunk reuses (taken at once here)
    reused = [
        s.clone()
        for _, _, s in tiny_eval_model.segment_chunks(
            images, text_embeddings=text, out_size=out_size, max_bytes=max_bytes, _reuse=True, **kwargs
        )
    ]
    assert torch.equal(torch.cat(reused, dim=1), full)
    labels = tiny_eval_model.segment_labels(
        images, text_embeddings=text, out_size=out_size, max_bytes=max_bytes, **kwargs
    )
    assert torch.equal(labels, full.argmax(1))


def test_chunks_are_the_full_scores_on_two_threads(tiny_eval_model, text):
    """ATen splits work between threads by element counts: two threads, a slide case."""
    test_chunks_are_the_full_scores_bit_for_bit(tiny_eval_model, text, *CASES[1], max_bytes=2**16, threads=2)


@pytest.mark.parametrize("mode", ["whole", "slide"])
def test_chunks_are_the_full_scores_under_bf16_autocast(tiny_eval_model, text, mode):
    """Under autocast the grid logits are bf16 and the window sums float32, in both paths."""
    torch.manual_seed(5)
    images = torch.randn(2, 3, 64, 107)
    kwargs = {"seen": [1, 70], "seen_bias": 0.1, "mode": mode, "crop": 64, "stride": 43}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        full = full_path(tiny_eval_model, images, text, (90, 150), **kwargs)
        reused = [
            s.clone()
            for _, _, s in tiny_eval_model.segment_chunks(
                images, text_embeddings=text, out_size=(90, 150), max_bytes=2**16, _reuse=True, **kwargs
            )
        ]
        labels = tiny_eval_model.segment_labels(
            images, text_embeddings=text, out_size=(90, 150), max_bytes=2**16, **kwargs
        )
    assert full.dtype == reused[0].dtype
    assert torch.equal(torch.cat(reused, dim=1), full)
    assert torch.equal(labels, full.argmax(1))


def test_ties_go_to_the_lower_class_across_chunks(tiny_eval_model, text):
    """A class and a copy of it 64 classes later (another chunk) score the same everywhere."""
    torch.manual_seed(4)
    images = torch.randn(1, 3, 64, 64)
    best = tiny_eval_model.segment(images, text_embeddings=text, mode="whole").argmax(1)
    winner = int(best[best < 64].mode().values)  # a class that wins somewhere
    tied = text.clone()
    tied[winner + 64] = tied[winner]
    full = tiny_eval_model.segment(images, text_embeddings=tied, mode="whole")
    assert torch.equal(full[:, winner], full[:, winner + 64])
    labels = tiny_eval_model.segment_labels(images, text_embeddings=tied, mode="whole", max_bytes=2**16)
    assert torch.equal(labels, full.argmax(1))
    assert (labels == winner).any() and not (labels == winner + 64).any()


def test_memory_stays_within_the_chunk_budget(monkeypatch):
    """847 classes: no full-size tensor of more classes than the budget allows is ever built (maps
    larger than ATen's small-map kernel: a 128-pixel crop)."""
    from tiny_model import TINY_ARCH

    from zegclip.model import CLIPConfig, ZegCLIP, ZegCLIPConfig

    torch.manual_seed(3)
    model = ZegCLIP(
        ZegCLIPConfig(clip=CLIPConfig(arch=TINY_ARCH), image_size=128, prompt_tokens=3, decoder_heads=4)
    ).eval()
    text = F.normalize(torch.randn(847, model.embed_dim), dim=-1)
    shapes: list[tuple[int, ...]] = []
    original = chunked.chunk_scores

    def spy(*args, **kwargs):
        out = original(*args, **kwargs)
        shapes.append(tuple(out.shape))
        return out

    monkeypatch.setattr(chunked, "chunk_scores", spy)
    budget = 2**21
    labels = model.segment_labels(
        torch.randn(1, 3, 128, 213), text_embeddings=text, out_size=(240, 400), max_bytes=budget
    )
    assert labels.shape == (1, 240, 400) and int(labels.max()) < 847
    assert sum(s[1] for s in shapes) == 847 and len(shapes) > 10
    per_class = 4 * (128 * 128 + 2 * 128 * 213 + 240 * 400)  # mask, window view, input and output sizes
    assert max(s[1] for s in shapes) * per_class <= budget


@pytest.mark.parametrize("classes", [1, 3, 5, 64, 67, 130, 131, 847])
@pytest.mark.parametrize("per_chunk", [1, 2, 3, 10, 63, 64, 100, 200, 5000])
def test_class_chunks_cover_every_class_once(classes, per_chunk):
    chunks = class_chunks(classes, per_chunk)
    assert chunks[0][0] == 0 and chunks[-1][1] == classes
    assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:]))
    sizes = [stop - start for start, stop in chunks]
    assert all(size > 0 for size in sizes)
    if classes != 3:
        assert 3 not in sizes  # ATen resizes 3 channels with another kernel on one thread
    if min(per_chunk, classes) >= 64:
        assert all(start % 64 == 0 for start, _ in chunks)
    limit = max(per_chunk, 2)  # a chunk of 3 becomes 2
    assert max(sizes) <= (limit + 3 if limit >= 64 else limit)  # the aligned ones may take a last 3 in


def test_predict_uses_the_chunked_labels(tiny_eval_model):
    """``predict`` without scores gives the argmax of the scores it returns with them."""
    names = ["cat", "dog", "grass", "sky", "road"]
    image = (torch.rand(45, 70, 3) * 255).to(torch.uint8).numpy()
    with_scores = tiny_eval_model.predict(image, names, return_scores=True)
    without = tiny_eval_model.predict(image, names)
    assert without.scores is None
    assert (with_scores.label == without.label).all()
    assert (with_scores.label == with_scores.scores.argmax(0).numpy()).all()


@pytest.mark.parametrize("mode", ["whole", "slide"])
def test_chunks_are_the_full_scores_with_the_models_own_bf16_mixed(tiny_eval_model, text, mode):
    """``zegclip.load(..., precision="bf16-mixed")`` (what ``auto`` picks on a CPU with native bf16):
    the model's own autocast, scores in float32, the same labels as ``segment`` in both paths."""
    from zegclip.model.precision import choose

    torch.manual_seed(6)
    images = torch.randn(1, 3, 64, 107)
    kwargs = {"seen": [1, 70], "seen_bias": 0.1, "mode": mode, "crop": 64, "stride": 43}
    saved = tiny_eval_model.precision
    tiny_eval_model.precision = choose("bf16-mixed", "cpu")
    try:
        full = full_path(tiny_eval_model, images, text, (90, 150), **kwargs)
        reused = [
            s.clone()
            for _, _, s in tiny_eval_model.segment_chunks(
                images, text_embeddings=text, out_size=(90, 150), max_bytes=2**16, _reuse=True, **kwargs
            )
        ]
        labels = tiny_eval_model.segment_labels(
            images, text_embeddings=text, out_size=(90, 150), max_bytes=2**16, **kwargs
        )
    finally:
        tiny_eval_model.precision = saved
    assert full.dtype == reused[0].dtype == torch.float32
    assert torch.equal(torch.cat(reused, dim=1), full)
    assert torch.equal(labels, full.argmax(1))
