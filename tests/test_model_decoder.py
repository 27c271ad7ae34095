"""Relationship descriptor and mask decoder: the computation, and no unused trainable parameters
(what lets DDP run without ``find_unused_parameters``)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from zegclip import ZegCLIP
from zegclip.common.constants import IGNORE_INDEX
from zegclip.model.decoder import DecoderLayer, MaskDecoder, RelationshipDescriptor
from zegclip.model.loss import FocalDiceLoss


def test_relationship_descriptor():
    torch.manual_seed(0)
    text, glob = F.normalize(torch.randn(5, 16), dim=-1), F.normalize(torch.randn(3, 16), dim=-1)
    rd = RelationshipDescriptor(16)
    assert rd.q_proj.in_features == 32
    expected = torch.stack(
        [F.linear(torch.cat([text * g, text], -1), rd.q_proj.weight, rd.q_proj.bias) for g in glob]
    )
    assert torch.allclose(rd(text, glob), expected, atol=1e-6)
    text_only = RelationshipDescriptor(16, enabled=False)
    assert text_only.q_proj.in_features == 16
    out = text_only(text, glob)
    assert out.shape == (3, 5, 16) and torch.allclose(out, text_only.q_proj(text).expand(3, -1, -1))


def test_decoder_logits_are_head_averaged_scaled_attention_logits():
    torch.manual_seed(0)
    dec = MaskDecoder(16, layers=2, heads=4, dropout=0.0).eval()
    queries, memory = torch.randn(2, 3, 16), torch.randn(2, 10, 16)
    all_queries, all_logits = dec(queries, memory)
    assert len(all_queries) == 1 and len(all_logits) == 2

    def logits(layer: DecoderLayer, q: torch.Tensor) -> torch.Tensor:
        qh = layer.q(q).reshape(2, 3, 4, 4).transpose(1, 2)
        kh = layer.k(memory).reshape(2, 10, 4, 4).transpose(1, 2)
        return (qh @ kh.transpose(-1, -2) / 2.0).mean(1)  # head_dim 4: scale 4 ** -0.5

    first, last = dec.layers
    assert torch.allclose(all_logits[0], logits(first, queries), atol=1e-6)
    attn = torch.softmax(
        first.q(queries).reshape(2, 3, 4, 4).transpose(1, 2)
        @ first.k(memory).reshape(2, 10, 4, 4).transpose(1, 2).transpose(-1, -2)
        / 2.0,
        dim=-1,
    )
    out = (attn @ first.v(memory).reshape(2, 10, 4, 4).transpose(1, 2)).transpose(1, 2).reshape(2, 3, 16)
    x = first.norm_attn(queries + first.proj(out))  # post-norm, no self-attention
    x = first.norm_ffn(x + first.ffn(x))
    assert torch.allclose(all_queries[0], x, atol=1e-5)
    assert torch.allclose(all_logits[1], logits(last, x), atol=1e-5)
    # the last layer holds only what its logits need
    assert {n for n, _ in last.named_parameters()} == {"q.weight", "q.bias", "k.weight", "k.bias"}
    with pytest.raises(ValueError, match="not divisible by 3 heads"):
        MaskDecoder(16, heads=3)


CONFIGS = {
    "default": {},
    "one_decoder_layer": {"decoder_layers": 1},
    "no_descriptor": {"relationship_descriptor": False},
    "no_prompts": {"prompt_tokens": 0},
    "one_deep_layer": {"deep_prompt_layers": 1},
    "ft_backbone": {"ft_backbone": True},
    "no_deep_layers": {"deep_prompt_layers": 0},
}


@pytest.mark.parametrize("overrides", list(CONFIGS.values()), ids=list(CONFIGS))
def test_every_trainable_parameter_gets_a_gradient(tiny_config, overrides):
    torch.manual_seed(0)
    model = ZegCLIP(dataclasses.replace(tiny_config, **overrides)).train()  # dropout on, as in training
    text = model.class_embeddings(["cat", "dog", "grass", "sky"])
    out = model(torch.randn(2, 3, 64, 64), text)
    labels = torch.randint(0, 4, (2, 64, 64))
    labels[:, :8] = IGNORE_INDEX
    FocalDiceLoss()(out.pred_masks, labels).total.backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable
    no_grad = [n for n, p in trainable if p.grad is None]
    assert not no_grad, f"trainable parameters without a gradient: {no_grad}"
    assert all(torch.isfinite(p.grad).all() for _, p in trainable)
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad and p.grad is not None]
    assert not frozen
