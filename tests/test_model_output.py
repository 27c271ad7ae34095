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


def test_scores_skip_resizing_to_the_same_size_exactly(tiny_config):
    torch.manual_seed(0)
    model = ZegCLIP(tiny_config).eval()
    images, text = torch.randn(1, 3, 64, 64), model.class_embeddings(["a", "b"])
    with torch.no_grad():
        scores = model.scores(images, text)
        resized = F.interpolate(scores, size=(64, 64), mode="bilinear", align_corners=False)
    assert torch.equal(scores, resized)
