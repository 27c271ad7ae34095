"""ZegCLIPOutput: grid logits for the loss, full-size ``pred_masks`` only when read."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from zegclip import ZegCLIP


def test_pred_masks_are_computed_on_first_read_and_logits_for_picks_the_grid(tiny_config):
    torch.manual_seed(0)
    model = ZegCLIP(tiny_config).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64), model.class_embeddings(["a", "b", "c"]))
    assert out.logits.shape == (2, 3, 4, 4) and out.mask_size == (64, 64)
    assert "pred_masks" not in out.__dict__  # nothing full-size was made by the forward pass
    expected = F.interpolate(out.logits, size=(64, 64), mode="bilinear", align_corners=False)
    assert torch.equal(out.pred_masks, expected)
    assert out.pred_masks is out.pred_masks  # cached
    assert out.logits_for((64, 64)) is out.logits  # the loss upsamples the grid itself
    assert out.logits_for(torch.Size([96, 96])) is out.pred_masks  # other label sizes: as officially


def test_scores_skip_resizing_to_the_same_size_exactly(tiny_config, monkeypatch):
    """At the crop size the scores are the upsampled, calibrated maps themselves: one resize (grid ->
    crop), not a second identity resize; any other size (also one side only) is resized to it."""
    torch.manual_seed(0)
    model = ZegCLIP(tiny_config).eval()
    text = model.class_embeddings(["a", "b"])
    sizes: list[tuple[int, int]] = []
    interpolate = F.interpolate

    def spy(x, size=None, **kwargs):
        sizes.append(tuple(size))
        return interpolate(x, size=size, **kwargs)

    monkeypatch.setattr(F, "interpolate", spy)
    for shape, resizes in [
        ((64, 64), [(64, 64)]),
        ((64, 96), [(64, 64), (64, 96)]),
        ((96, 64), [(64, 64), (96, 64)]),
    ]:
        with torch.no_grad():
            out = model(torch.randn(1, 3, *shape), text)
            sizes.clear()  # (the forward resizes the positional embedding for other sizes)
            scores = model.scores_from_logits(out.logits, shape)  # what model.scores returns
        assert sizes == resizes, shape
        assert scores.shape == (1, 2, *shape)
        if shape == (64, 64):  # the same numbers as the crop-size maps (calibration without seen classes)
            assert torch.equal(scores, interpolate(out.logits, size=shape, mode="bilinear").sigmoid())
