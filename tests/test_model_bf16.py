"""bf16-mixed training (``trainer.precision=bf16-mixed``) stays close to float32.

Stated tolerance (tiny random model, 3 seeds measured at about 1e-4 and 0.4-1%): the loss within
2e-3 relative, each prompt parameter's gradient within 3e-2 (relative L2 norm).
"""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch.plugins.precision import MixedPrecision
from tiny_model import TINY_ARCH

from zegclip import CLIPConfig, ZegCLIP, ZegCLIPConfig
from zegclip.common.constants import IGNORE_INDEX
from zegclip.model.loss import FocalDiceLoss

LOSS_RTOL = 2e-3
GRAD_RTOL = 3e-2


@pytest.mark.parametrize("seed", [0, 1])
def test_bf16_mixed_loss_and_prompt_gradients_match_fp32(seed):
    torch.manual_seed(seed)
    config = ZegCLIPConfig(
        clip=CLIPConfig(arch=TINY_ARCH),
        image_size=64,
        prompt_tokens=3,
        decoder_heads=4,
        prompt_dropout=0.0,
        decoder_dropout=0.0,
    )
    model = ZegCLIP(config).train()
    text = model.class_embeddings(["cat", "dog", "grass", "sky"])
    gen = torch.Generator().manual_seed(seed)
    images, labels = torch.randn(2, 3, 64, 64, generator=gen), torch.randint(0, 4, (2, 64, 64), generator=gen)
    labels[:, :8] = IGNORE_INDEX
    precision = MixedPrecision("bf16-mixed", "cpu")  # what the Trainer wraps training_step in

    results = []
    for mixed in (False, True):
        model.zero_grad()
        if mixed:
            with precision.forward_context():
                out = model(images, text)
                loss = FocalDiceLoss()(out.logits_for(labels.shape[-2:]), labels)
            assert out.logits.dtype == torch.bfloat16  # the bf16 path really ran
        else:
            out = model(images, text)
            loss = FocalDiceLoss()(out.logits_for(labels.shape[-2:]), labels)
        assert loss.total.dtype == torch.float32  # accumulated in fp32 either way
        loss.total.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if "prompt" in n}
        results.append((loss.total.detach(), grads))

    (loss_fp32, grads_fp32), (loss_bf16, grads_bf16) = results
    assert abs(loss_bf16 - loss_fp32) <= LOSS_RTOL * abs(loss_fp32)
    assert set(grads_fp32) == {
        "image_encoder.prompt_embeddings",
        "image_encoder.deep_prompt_embeddings",
        "image_encoder.prompt_proj.weight",
        "image_encoder.prompt_proj.bias",
        "image_encoder.prompt_norm.weight",
        "image_encoder.prompt_norm.bias",
    }
    for name, ref in grads_fp32.items():
        assert grads_bf16[name].dtype == torch.float32
        err = torch.linalg.norm(grads_bf16[name] - ref) / torch.linalg.norm(ref)
        assert 0 < err <= GRAD_RTOL, f"{name}: relative gradient error {err:.3g}"
