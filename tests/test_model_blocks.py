"""Our forward of open_clip's frozen blocks equals open_clip's own, runs one GEMM per projection,
and activation checkpointing changes nothing but memory."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from open_clip.transformer import QuickGELU, ResidualAttentionBlock
from torch import nn
from torch.profiler import ProfilerActivity, profile

from zegclip import ZegCLIP
from zegclip.model.blocks import (
    _attention_backward_rows,
    _hand_backward_applies,
    block_forward,
    supports_fast_forward,
)
from zegclip.model.loss import FocalDiceLoss


def make_block(
    width: int = 64, heads: int = 4, quick_gelu: bool = True, ls: float | None = None
) -> nn.Module:
    torch.manual_seed(0)
    block = ResidualAttentionBlock(
        width, heads, ls_init_value=ls, act_layer=QuickGELU if quick_gelu else nn.GELU
    )
    if ls is not None:  # layer scales away from their constant init
        with torch.no_grad():
            block.ls_1.gamma.uniform_(0.5, 1.5)
            block.ls_2.gamma.uniform_(0.5, 1.5)
    return block.eval()


def _forward_backward(fn, x: torch.Tensor, grad_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    leaf = x.clone().requires_grad_(True)
    out = fn(leaf)
    out.backward(grad_out)
    return out.detach(), leaf.grad


@pytest.mark.parametrize("frozen", [True, False], ids=["frozen", "trainable"])
@pytest.mark.parametrize(("quick_gelu", "ls"), [(True, None), (False, None), (True, 0.1)])
def test_block_forward_and_input_gradient_equal_open_clip(quick_gelu, ls, frozen):
    """Frozen weights take the hand-written backward, trainable ones autograd's."""
    block = make_block(quick_gelu=quick_gelu, ls=ls).requires_grad_(not frozen)
    assert supports_fast_forward(block)
    assert _hand_backward_applies(block) is frozen
    x = torch.randn(3, 37, 64, generator=torch.Generator().manual_seed(1))
    grad_out = torch.randn(3, 37, 64, generator=torch.Generator().manual_seed(2))
    ref_out, ref_grad = _forward_backward(block, x, grad_out)
    out, grad = _forward_backward(lambda t: block_forward(block, t), x, grad_out)
    assert (out - ref_out).abs().max() <= 2e-6 * ref_out.abs().max()
    assert (grad - ref_grad).abs().max() <= 2e-6 * ref_grad.abs().max()


def test_hand_backward_under_bf16_autocast_matches_autograd():
    """Under autocast the hand-written backward runs its GEMMs in bf16, as autograd does."""
    block = make_block(width=128, heads=4).requires_grad_(False)
    x = torch.randn(2, 50, 128, generator=torch.Generator().manual_seed(1))
    grad_out = torch.randn(2, 50, 128, generator=torch.Generator().manual_seed(2))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref_out, ref_grad = _forward_backward(block, x, grad_out)
        out, grad = _forward_backward(lambda t: block_forward(block, t), x, grad_out)
    fp32_out, fp32_grad = _forward_backward(block, x, grad_out)
    assert out.dtype == ref_out.dtype == torch.float32 and grad.dtype == torch.float32
    assert (out - ref_out).abs().max() <= 1e-2 * ref_out.abs().max()
    assert (grad - ref_grad).abs().max() <= 2e-2 * ref_grad.abs().max()
    # and both are bf16-accurate versions of the fp32 numbers, not equal to them
    assert 0 < (grad - fp32_grad).abs().max() <= 2e-2 * fp32_grad.abs().max()


@pytest.mark.parametrize(("quick_gelu", "ls"), [(True, None), (False, 0.1)])
def test_inference_forward_equals_open_clip_and_keeps_its_input(quick_gelu, ls):
    block = make_block(quick_gelu=quick_gelu, ls=ls)
    x = torch.randn(2, 37, 64, generator=torch.Generator().manual_seed(1))
    before = x.clone()
    with torch.no_grad():
        out, ref = block_forward(block, x), block(x)
    assert torch.equal(x, before)
    assert (out - ref).abs().max() <= 2e-6 * ref.abs().max()


def test_non_contiguous_input_is_accepted():
    block = make_block()
    x = torch.randn(37, 3, 64).transpose(0, 1)  # token-major storage
    assert not x.is_contiguous()
    with torch.no_grad():
        assert torch.allclose(block_forward(block, x), block(x.contiguous()), atol=1e-6)


def test_unsupported_blocks_are_recognised():
    cross = ResidualAttentionBlock(64, 4, is_cross_attention=True)
    dropout = make_block()
    dropout.attn.dropout = 0.1
    assert not supports_fast_forward(cross)
    assert not supports_fast_forward(dropout)
    assert not supports_fast_forward(nn.Linear(4, 4))
    hooked = make_block()
    handle = hooked.register_forward_pre_hook(lambda *_: None)
    assert not supports_fast_forward(hooked)  # hooks must fire: the block runs its own forward
    handle.remove()
    assert supports_fast_forward(hooked)


def _bmm_shapes(fn) -> list[list[int]]:
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        fn()
    return [e.input_shapes[0] for e in prof.events() if e.name in ("aten::bmm", "aten::baddbmm")]


def test_training_step_runs_no_per_token_batched_matmul(tiny_config):
    """The in-projection of the tower must be one GEMM over all tokens, not a bmm per token
    (what open_clip's batch-first MultiheadAttention does in a backward pass)."""
    torch.manual_seed(0)
    model = ZegCLIP(tiny_config).train()
    text = model.class_embeddings(["a", "b", "c"])
    images = torch.randn(2, 3, 64, 64)
    labels = torch.randint(0, 3, (2, 64, 64))
    tokens = 1 + tiny_config.prompt_tokens + (64 // 16) ** 2

    def step() -> None:
        FocalDiceLoss()(model(images, text).pred_masks, labels).total.backward()

    assert not [s for s in _bmm_shapes(step) if s and s[0] == tokens]
    # the same check detects the slow path when open_clip's own block forward runs
    block = model.image_encoder.vit.transformer.resblocks[0]
    x = torch.randn(2, tokens, 64, requires_grad=True)
    assert [s for s in _bmm_shapes(lambda: block(x).sum().backward()) if s and s[0] == tokens]


@pytest.mark.parametrize("deep_prompt_layers", [None, 1])
def test_grad_checkpointing_gives_the_same_loss_and_gradients(tiny_config, deep_prompt_layers):
    results = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        config = dataclasses.replace(
            tiny_config,
            grad_checkpointing=checkpointing,
            deep_prompt_layers=deep_prompt_layers,
            prompt_dropout=0.5,
        )
        model = ZegCLIP(config).train()
        assert model.image_encoder.grad_checkpointing is checkpointing
        text = model.class_embeddings(["a", "b", "c"])
        gen = torch.Generator().manual_seed(3)
        images, labels = (
            torch.randn(2, 3, 64, 64, generator=gen),
            torch.randint(0, 3, (2, 64, 64), generator=gen),
        )
        torch.manual_seed(5)  # the same prompt-dropout draws in both runs
        loss = FocalDiceLoss()(model(images, text).pred_masks, labels).total
        loss.backward()
        results.append((loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.requires_grad}))
    (loss_a, grads_a), (loss_b, grads_b) = results
    assert torch.equal(loss_a, loss_b)
    assert grads_a.keys() == grads_b.keys() and grads_a
    for name, grad in grads_a.items():
        assert torch.allclose(grad, grads_b[name], rtol=0, atol=1e-7 * max(grad.abs().max().item(), 1e-30)), (
            name
        )


def test_autocast_casts_frozen_weights_once_and_sees_weight_changes():
    block = make_block(width=64, heads=4).requires_grad_(False)
    x = torch.randn(2, 20, 64)

    def run() -> torch.Tensor:
        leaf = x.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = block_forward(block, leaf)
        out.sum().backward()
        return out.detach()

    run()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        run()
    weight_shapes = {tuple(p.shape) for p in block.parameters() if p.ndim == 2}
    casts = [
        e for e in prof.events() if e.name == "aten::_to_copy" and tuple(e.input_shapes[0]) in weight_shapes
    ]
    assert not casts, "frozen weights were cast again"
    with torch.no_grad():  # e.g. load_state_dict: the cached bf16 copies must follow
        block.mlp[0].weight.mul_(2)
    fresh = make_block(width=64, heads=4).requires_grad_(False)
    with torch.no_grad():
        fresh.mlp[0].weight.mul_(2)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            expected = fresh(x)
    assert torch.allclose(run(), expected, atol=1e-2 * expected.abs().max().item())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_attention_backward_of_some_rows_equals_the_flash_kernels(dtype):
    gen = torch.Generator().manual_seed(0)
    q, k, v, grad_out = (torch.randn(2, 3, 37, 8, generator=gen).to(dtype) for _ in range(4))
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, False)
    full = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
        grad_out, q, k, v, out, lse, 0.0, False
    )
    rows = slice(1, 5)
    part = _attention_backward_rows(grad_out, q, k, v, out, lse, rows)
    tol = 1e-6 if dtype == torch.float32 else 2e-2
    for expected, got in zip(full, part):
        assert got.dtype == dtype and got.shape == (2, 3, 4, 8)
        assert (got.float() - expected[:, :, rows].float()).abs().max() <= tol * expected.abs().max().float()


def test_gradient_of_some_input_rows_only():
    """The first block's input needs a gradient at its prompt rows only: those rows equal the
    full gradient's, the others come back as zeros."""
    block = make_block().requires_grad_(False)
    x = torch.randn(2, 37, 64, generator=torch.Generator().manual_seed(1))
    grad_out = torch.randn(2, 37, 64, generator=torch.Generator().manual_seed(2))
    _, full = _forward_backward(lambda t: block_forward(block, t), x, grad_out)
    rows = slice(1, 4)
    out, part = _forward_backward(lambda t: block_forward(block, t, rows), x, grad_out)
    assert torch.equal(out, block_forward(block, x.clone().requires_grad_(True)).detach())
    assert (part[:, rows] - full[:, rows]).abs().max() <= 1e-6 * full.abs().max()
    assert not part[:, :1].any() and not part[:, 4:].any()
