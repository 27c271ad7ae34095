"""Prompted ViT (VPT-deep): freezing, train/eval modes, prompt variants, and where autograd runs."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from zegclip import ZegCLIP
from zegclip.model.loss import FocalDiceLoss

PROMPT_NAMES = {
    "image_encoder.prompt_embeddings",
    "image_encoder.deep_prompt_embeddings",
    "image_encoder.prompt_proj.weight",
    "image_encoder.prompt_proj.bias",
    "image_encoder.prompt_norm.weight",
    "image_encoder.prompt_norm.bias",
}


def build(config, seed: int = 0, **overrides) -> ZegCLIP:
    torch.manual_seed(seed)
    return ZegCLIP(dataclasses.replace(config, **overrides))


def reference_image_encoder(enc, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """docs/method.md §1.2 written out step by step (eval mode: no prompt dropout)."""
    vit, n, width = enc.vit, enc.prompt_tokens, enc.width
    x = vit.conv1(images)
    b, _, h, w = x.shape
    patches = x.flatten(2).transpose(1, 2)
    pos = vit.positional_embedding
    gh, gw = enc.train_grid
    spatial = pos[1:].reshape(1, gh, gw, width).permute(0, 3, 1, 2)
    spatial = F.interpolate(spatial, size=(h, w), mode="bilinear", align_corners=False)
    spatial = spatial.permute(0, 2, 3, 1).reshape(h * w, width)
    cls = vit.class_embedding + pos[0] + vit.class_embedding  # the class embedding counts twice
    tokens = vit.ln_pre(torch.cat([cls.expand(b, 1, width), patches + spatial], dim=1))
    fresh = {}  # layer -> prompts inserted before it
    if n:
        fresh[0] = enc.prompt_proj(enc.prompt_embeddings[0])
        for i in range(1, enc.deep_layers + 1):
            fresh[i] = enc.prompt_proj(enc.deep_prompt_embeddings[i - 1])
    shallow = n and enc.deep_layers == 0  # shallow VPT: the first prompts flow through every layer
    x = tokens
    for i, block in enumerate(vit.transformer.resblocks):
        cls_tok, patch_tok = x[:, :1], x[:, -h * w :]
        if i in fresh:  # replace whatever prompts the previous layer output
            x = torch.cat([cls_tok, fresh[i].expand(b, n, width), patch_tok], dim=1)
        elif not shallow:  # deep VPT: prompts dropped after the last deep layer
            x = torch.cat([cls_tok, patch_tok], dim=1)
        x = block(x)
    x = torch.cat([x[:, :1], x[:, -h * w :]], dim=1)
    if n:
        x = enc.prompt_norm(x)
    x = vit.ln_post(x) @ vit.proj
    return F.normalize(x[:, 0], dim=-1), F.normalize(x[:, 1:], dim=-1).transpose(1, 2).reshape(b, -1, h, w)


def tokens_per_block(enc, images: torch.Tensor) -> list[int]:
    seen: list[int] = []
    hooks = [
        block.register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape[1]))
        for block in enc.vit.transformer.resblocks
    ]
    try:
        with torch.no_grad():
            enc(images)
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def test_clip_frozen_and_kept_in_eval_mode(tiny_config):
    model = build(tiny_config)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    expected = PROMPT_NAMES | {n for n, _ in model.relationship.named_parameters(prefix="relationship")}
    expected |= {n for n, _ in model.decoder.named_parameters(prefix="decoder")}
    assert trainable == expected
    assert {n for n, _ in model.named_parameters() if n.startswith(("image_encoder.vit.", "text_encoder."))}
    assert trainable == {n for n, p in model.named_parameters() if p in set(model.trainable_parameters())}

    model.train()
    assert all(not m.training for m in model.image_encoder.vit.modules())
    assert all(not m.training for m in model.text_encoder.modules())
    assert model.image_encoder.training and model.image_encoder.prompt_dropout.training
    assert all(m.training for m in model.decoder.modules()) and model.relationship.training
    model.eval()
    assert not any(m.training for m in model.modules())
    model.train()
    assert not model.image_encoder.vit.training and model.decoder.training


def test_ft_backbone_unfreezes_image_tower_only(tiny_config):
    model = build(tiny_config, ft_backbone=True)
    vit_params = list(model.image_encoder.vit.parameters())
    assert vit_params and all(p.requires_grad for p in vit_params)
    assert not any(p.requires_grad for p in model.text_encoder.parameters())
    model.train()
    assert all(m.training for m in model.image_encoder.vit.modules())
    assert not any(m.training for m in model.text_encoder.modules())

    text = model.class_embeddings(["cat", "dog"])
    out = model(torch.randn(2, 3, 64, 64), text)
    out.pred_masks.sum().backward()
    assert model.image_encoder.vit.conv1.weight.grad is not None
    assert model.image_encoder.vit.conv1.weight.grad.abs().sum() > 0


def test_no_autograd_graph_on_patch_embedding_when_frozen(tiny_config):
    model = build(tiny_config).train()
    enc = model.image_encoder
    recorded = {}
    enc.vit.conv1.register_forward_hook(lambda _m, _i, out: recorded.__setitem__("conv1", out.requires_grad))
    enc.vit.ln_pre.register_forward_hook(
        lambda _m, _i, out: recorded.__setitem__("ln_pre", out.requires_grad)
    )
    text = model.class_embeddings(["cat", "dog"])
    out = model(torch.randn(2, 3, 64, 64), text)
    assert recorded == {"conv1": False, "ln_pre": False}
    assert out.global_embedding.requires_grad and out.visual_embedding.requires_grad  # through the prompts
    labels = torch.randint(0, 2, (2, 64, 64))
    FocalDiceLoss()(out.pred_masks, labels).total.backward()
    assert enc.vit.conv1.weight.grad is None and enc.vit.positional_embedding.grad is None
    assert enc.prompt_embeddings.grad is not None and enc.prompt_embeddings.grad.abs().sum() > 0

    # with fine-tuning, the patch embedding is part of the graph
    ft = build(tiny_config, ft_backbone=True).train()
    ft.image_encoder.vit.ln_pre.register_forward_hook(
        lambda _m, _i, out: recorded.__setitem__("ft_ln_pre", out.requires_grad)
    )
    ft(torch.randn(2, 3, 64, 64), text)
    assert recorded["ft_ln_pre"] is True


@pytest.mark.parametrize("deep", [None, 1, 0])
def test_image_encoder_matches_step_by_step_reference(tiny_config, deep):
    model = build(tiny_config, deep_prompt_layers=deep).eval()
    images = torch.randn(2, 3, 64, 80)  # non-square: 4x5 grid, positions resized from 4x4
    with torch.no_grad():
        g, v = model.image_encoder(images)
        g_ref, v_ref = reference_image_encoder(model.image_encoder, images)
    assert v.shape == (2, 32, 4, 5) and g.shape == (2, 32)
    assert torch.allclose(g, g_ref, atol=1e-5) and torch.allclose(v, v_ref, atol=1e-5)
    assert torch.allclose(v.norm(dim=1), torch.ones(2, 4, 5), atol=1e-5)


@pytest.mark.parametrize(("deep", "expected"), [(None, [20, 20, 20]), (1, [20, 20, 17]), (0, [20, 20, 20])])
def test_deep_prompt_layers(tiny_config, deep, expected):
    model = build(tiny_config, deep_prompt_layers=deep)
    enc = model.image_encoder
    n_deep = 2 if deep is None else deep
    if n_deep:
        assert enc.deep_prompt_embeddings.shape == (n_deep, 3, 64)
    else:  # shallow VPT: no (empty) deep-prompt parameter
        assert "deep_prompt_embeddings" not in dict(enc.named_parameters())
    # 1 cls + 3 prompts + 16 patches; deep VPT drops the prompts after the last deep layer,
    # shallow VPT keeps the first layer's prompts all the way
    assert tokens_per_block(enc.eval(), torch.randn(1, 3, 64, 64)) == expected
    model.train()
    text = model.class_embeddings(["a", "b", "c"])
    out = model(torch.randn(2, 3, 64, 64), text)
    assert out.pred_masks.shape == (2, 3, 64, 64) and out.visual_embedding.shape == (2, 32, 4, 4)
    out.pred_masks.sum().backward()
    assert enc.prompt_embeddings.grad is not None and enc.prompt_embeddings.grad.abs().sum() > 0
    if n_deep:
        assert enc.deep_prompt_embeddings.grad is not None
        assert enc.deep_prompt_embeddings.grad.abs().sum() > 0


def test_deep_prompt_layers_out_of_range(tiny_config):
    with pytest.raises(ValueError, match=r"deep_layers must be in \[0, 2\], got 3"):
        build(tiny_config, deep_prompt_layers=3)


def test_zero_prompt_tokens(tiny_config):
    model = build(tiny_config, prompt_tokens=0)
    enc = model.image_encoder
    assert not any(n.startswith("prompt") for n, _ in enc.named_parameters())
    assert not hasattr(enc, "prompt_embeddings")
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        n for n, _ in model.named_parameters() if n.startswith(("relationship.", "decoder."))
    }
    assert tokens_per_block(enc.eval(), torch.randn(1, 3, 64, 64)) == [17, 17, 17]
    model.train()
    text = model.class_embeddings(["a", "b"])
    out = model(torch.randn(2, 3, 64, 64), text)
    assert out.pred_masks.shape == (2, 2, 64, 64)
    assert not out.visual_embedding.requires_grad  # nothing in the image tower trains
    FocalDiceLoss()(out.pred_masks, torch.randint(0, 2, (2, 64, 64))).total.backward()
    assert all(p.grad is not None for p in model.trainable_parameters())


def test_positional_embedding_follows_the_input_grid(tiny_config):
    enc = build(tiny_config).image_encoder
    pos = enc.vit.positional_embedding.detach()
    grid = pos[1:].reshape(1, 4, 4, 64).permute(0, 3, 1, 2)
    expected = F.interpolate(grid, size=(3, 7), mode="bilinear", align_corners=False)
    got = enc.positional_embedding((3, 7)).detach()
    assert got.shape == (1 + 21, 64)
    assert torch.allclose(got[1:], expected.flatten(2)[0].T, atol=1e-6)
    assert torch.allclose(got[0], pos[0] + enc.vit.class_embedding.detach())
    assert torch.equal(
        enc.positional_embedding((4, 4)).detach()[1:], pos[1:]
    )  # identity at the training grid
