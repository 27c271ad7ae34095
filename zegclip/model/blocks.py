"""A fast forward (and backward) of open_clip's frozen ``ResidualAttentionBlock`` over its weights.

open_clip drives ``nn.MultiheadAttention`` batch-first: the module transposes its input to
token-major ``(L, B, D)``, and the in-projection of that non-contiguous tensor reaches
``matmul``'s broadcast path, which runs one small ``bmm`` per token (1,035 of them for a 512
crop with 10 prompts) in the backward pass and under autocast. Here the same computation is
written on a contiguous ``(B, L, D)`` tensor: one GEMM for q, k and v, one flash attention,
one GEMM for the output projection, then ``ln_2``, the MLP and the layer scales.

When the block's weights are frozen and only the input needs a gradient (ZegCLIP's prompts
pass through every block), :class:`_FrozenBlock` computes that gradient by hand (CPU): no
weight gradients, the activation's derivative kept from the forward pass (one saved tensor
instead of two), the q/k/v gradients packed with one copy, no autograd bookkeeping per op, and
for the first block only the prompt rows' gradient. Under autocast the frozen weights are cast
once (cached) and the backward pass runs in the forward pass's precision, as autograd would.
Without autograd (inference) the residual sum and the activation update their own buffers.
Under ``torch.compile`` the plain ops run (the compiler fuses them).

Numbers equal the block's own forward and autograd's gradients to float32 rounding
(``tests/test_model_blocks.py``).
"""

from __future__ import annotations

import weakref
from typing import NamedTuple

import torch
import torch.nn.functional as F
from open_clip.transformer import LayerScale, QuickGELU, ResidualAttentionBlock
from torch import nn

_QUICK_GELU = 1.702


def supports_fast_forward(block: nn.Module) -> bool:
    """True for a plain self-attention ``ResidualAttentionBlock`` (packed in-projection, no
    attention dropout, no cross-attention norm) without forward hooks; other blocks, and blocks
    someone hooked into, run their own forward."""
    if type(block) is not ResidualAttentionBlock or hasattr(block, "ln_1_kv") or _has_hooks(block):
        return False
    attn = block.attn
    return (
        type(attn) is nn.MultiheadAttention
        and attn._qkv_same_embed_dim
        and attn.in_proj_weight is not None
        and attn.bias_k is None
        and not attn.add_zero_attn
        and attn.dropout == 0.0
    )


def _has_hooks(module: nn.Module) -> bool:
    return bool(
        module._forward_hooks
        or module._forward_pre_hooks
        or nn.modules.module._global_forward_hooks
        or nn.modules.module._global_forward_pre_hooks
    )


def _hand_backward_applies(block: ResidualAttentionBlock) -> bool:
    """The hand-written backward covers QuickGELU / GELU MLPs, plain LayerNorms and layer
    scales (or none), with every weight frozen."""
    mlp = block.mlp
    parts_ok = (
        isinstance(mlp, nn.Sequential)
        and [type(m) for m in mlp] in ([nn.Linear, QuickGELU, nn.Linear], [nn.Linear, nn.GELU, nn.Linear])
        and all(isinstance(n, nn.LayerNorm) for n in (block.ln_1, block.ln_2))
        and all(
            type(s) is nn.Identity or (type(s) is LayerScale and not s.inplace)
            for s in (block.ls_1, block.ls_2)
        )
    )
    return parts_ok and not any(p.requires_grad for p in block.parameters())


class _Linears(NamedTuple):
    """The block's four linear layers' weights and biases."""

    in_w: torch.Tensor
    in_b: torch.Tensor | None
    out_w: torch.Tensor
    out_b: torch.Tensor | None
    fc_w: torch.Tensor
    fc_b: torch.Tensor | None
    proj_w: torch.Tensor
    proj_b: torch.Tensor | None


def _linears(block: ResidualAttentionBlock, device_type: str) -> _Linears:
    """The block's linear weights; under autocast in its dtype, cast once and kept on the block
    (autocast would cast frozen weights again at every use, forward and backward)."""
    attn, mlp = block.attn, block.mlp
    source = _Linears(
        attn.in_proj_weight,
        attn.in_proj_bias,
        attn.out_proj.weight,
        attn.out_proj.bias,
        mlp[0].weight,
        mlp[0].bias,
        mlp[2].weight,
        mlp[2].bias,
    )
    if not torch.is_autocast_enabled(device_type):
        return source
    dtype = torch.get_autocast_dtype(device_type)
    key = (dtype, tuple((t.data_ptr(), t._version) if t is not None else None for t in source))
    cached = _CAST_CACHE.get(block)
    if cached is None or cached[0] != key:  # first use, new dtype, or the weights changed
        cast = _Linears(*(t.detach().to(dtype) if t is not None else None for t in source))
        _CAST_CACHE[block] = cached = (key, cast)
    return cached[1]


_CAST_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""Block -> its weights cast for autocast (not a module attribute: no effect on copies or pickles)."""


def block_forward(
    block: ResidualAttentionBlock, x: torch.Tensor, grad_rows: slice | None = None
) -> torch.Tensor:
    """``block(x)`` for batch-first ``x`` ``(B, L, D)`` (see the module docstring), ``(B, L, D)``.

    ``grad_rows``: the token rows of ``x`` whose gradient is wanted (the rest of ``x`` does not
    depend on anything trainable, e.g. the first block's input, where only the prompts do); the
    gradient of the other rows is returned as zeros and not computed.
    """
    x = x.contiguous()
    if torch.compiler.is_compiling():
        pass  # torch.compile: plain ops (the compiler fuses them; it cannot trace the hand-written parts)
    elif not torch.is_grad_enabled():
        return _inference_forward(block, x)
    elif x.device.type == "cpu" and x.requires_grad and _hand_backward_applies(block):
        return _FrozenBlock.apply(x, block, grad_rows)
    x = x + block.ls_1(_attention(block.attn, block.ln_1(x)))
    return x + block.ls_2(block.mlp(block.ln_2(x)))


def _inference_forward(block: ResidualAttentionBlock, x: torch.Tensor) -> torch.Tensor:
    """``block(x)`` without autograd: the residual sum and QuickGELU update their own buffers."""
    mlp = block.mlp
    plain = isinstance(mlp, nn.Sequential) and [type(m) for m in mlp] in (
        [nn.Linear, QuickGELU, nn.Linear],
        [nn.Linear, nn.GELU, nn.Linear],
    )
    if not plain:
        x = x + block.ls_1(_attention(block.attn, block.ln_1(x)))
        return x.add_(block.ls_2(mlp(block.ln_2(x))))
    w = _linears(block, x.device.type)
    x = x + block.ls_1(_attention(block.attn, block.ln_1(x), w))  # a new tensor: the input stays intact
    u = F.linear(block.ln_2(x), w.fc_w, w.fc_b)
    u = u.mul_(torch.mul(u, _QUICK_GELU).sigmoid_()) if isinstance(mlp[1], QuickGELU) else mlp[1](u)
    return x.add_(block.ls_2(F.linear(u, w.proj_w, w.proj_b)))


def _attention(attn: nn.MultiheadAttention, x: torch.Tensor, w: _Linears | None = None) -> torch.Tensor:
    """Self-attention of ``x`` ``(B, L, D)`` with ``attn``'s weights (or ``w``), ``(B, L, D)``."""
    b, length, width = x.shape
    in_w, in_b, out_w, out_b = (
        w[:4]
        if w is not None
        else (attn.in_proj_weight, attn.in_proj_bias, attn.out_proj.weight, attn.out_proj.bias)
    )
    qkv = F.linear(x, in_w, in_b)  # (B, L, 3D): one GEMM
    q, k, v = _split_heads(qkv, attn.num_heads)
    out = F.scaled_dot_product_attention(q, k, v)
    return F.linear(out.transpose(1, 2).reshape(b, length, width), out_w, out_b)


def _split_heads(qkv: torch.Tensor, heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(B, L, 3D)`` -> q, k, v ``(B, H, L, D/H)`` (views)."""
    b, length, width3 = qkv.shape
    return qkv.view(b, length, 3, heads, width3 // (3 * heads)).permute(2, 0, 3, 1, 4).unbind(0)


def _layer_scale(scale: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return x if type(scale) is nn.Identity else x * scale.gamma


class _FrozenBlock(torch.autograd.Function):
    """``block(x)`` with a hand-written gradient for ``x`` only (frozen weights; CPU: it calls
    the CPU flash-attention kernels, on GPUs autograd's own path is already fast)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, block: ResidualAttentionBlock, grad_rows: slice | None) -> torch.Tensor:  # type: ignore[override]
        attn, mlp = block.attn, block.mlp
        b, length, width = x.shape
        w = _linears(block, x.device.type)
        ln_1 = torch.native_layer_norm(x, (width,), block.ln_1.weight, block.ln_1.bias, block.ln_1.eps)
        h = ln_1[0].to(x.dtype)
        qkv = F.linear(h, w.in_w, w.in_b)
        q, k, v = _split_heads(qkv, attn.num_heads)
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, False)
        a = F.linear(out.transpose(1, 2).reshape(b, length, width), w.out_w, w.out_b)
        x1 = x + _layer_scale(block.ls_1, a)
        ln_2 = torch.native_layer_norm(x1, (width,), block.ln_2.weight, block.ln_2.bias, block.ln_2.eps)
        u = F.linear(ln_2[0].to(x1.dtype), w.fc_w, w.fc_b)
        if isinstance(mlp[1], QuickGELU):
            s = torch.mul(u, _QUICK_GELU).sigmoid_()
            m = u * s
            # keep the activation's derivative s (1 + a u (1 - s)) = s + a s (u - m), not u and s
            act = torch.sub(u, m)
            act = torch.addcmul(s, s, act, value=_QUICK_GELU, out=act)
        else:
            m = F.gelu(u, approximate=mlp[1].approximate)
            act = u
        y = x1 + _layer_scale(block.ls_2, F.linear(m, w.proj_w, w.proj_b))
        ctx.save_for_backward(x, ln_1[1], ln_1[2], q, k, v, out, lse, x1, ln_2[1], ln_2[2], act)
        ctx.block, ctx.linears, ctx.grad_rows = block, w, grad_rows
        ctx.autocast = (torch.is_autocast_enabled(x.device.type), torch.get_autocast_dtype(x.device.type))
        return y

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor):  # type: ignore[override]
        x, mean_1, rstd_1, q, k, v, out, lse, x1, mean_2, rstd_2, act = ctx.saved_tensors
        block, w = ctx.block, ctx.linears
        attn, mlp = block.attn, block.mlp
        b, length, width = x.shape
        enabled, dtype = ctx.autocast
        with torch.autocast(x.device.type, dtype=dtype, enabled=enabled):  # the forward's precision
            grad_y = grad_y.contiguous()
            # MLP branch: y = x1 + ls_2(c_proj(act(c_fc(ln_2(x1)))))
            grad_m = _mm(_layer_scale(block.ls_2, grad_y), w.proj_w, act.dtype)
            if isinstance(mlp[1], QuickGELU):  # act holds d/du u sigmoid(a u)
                grad_u = grad_m.mul_(act)
            else:  # act holds u
                grad_u = torch.ops.aten.gelu_backward(grad_m, act, approximate=mlp[1].approximate)
            grad_h2 = _mm(grad_u, w.fc_w, x1.dtype)
            grad_x1 = _layer_norm_backward(grad_h2, x1, mean_2, rstd_2, block.ln_2).add_(grad_y)
            # attention branch: x1 = x + ls_1(out_proj(attention(in_proj(ln_1(x)))))
            grad_out = _mm(_layer_scale(block.ls_1, grad_x1), w.out_w, out.dtype)
            grad_out = grad_out.view(b, length, attn.num_heads, -1).transpose(1, 2)
            rows = ctx.grad_rows
            if rows is None:
                grads = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
                    grad_out, q, k, v, out, lse, 0.0, False
                )
            else:
                grads = _attention_backward_rows(grad_out, q, k, v, out, lse, rows)
            n = grads[0].shape[2]
            grad_qkv = torch.stack([g.transpose(1, 2) for g in grads], dim=2)  # (B, n, 3, H, d): one copy
            grad_h = _mm(grad_qkv.view(b, n, 3 * width), w.in_w, x.dtype)
            if rows is None:
                return _layer_norm_backward(grad_h, x, mean_1, rstd_1, block.ln_1).add_(grad_x1), None, None
            grad_x = torch.zeros_like(x)
            part = (t[:, rows].contiguous() for t in (x, mean_1, rstd_1))
            grad_x[:, rows] = _layer_norm_backward(grad_h, *part, block.ln_1)
            grad_x[:, rows] += grad_x1[:, rows]
        return grad_x, None, None


def _attention_backward_rows(
    grad_out: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    rows: slice,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of softmax attention for the q, k and v of token ``rows`` only, ``(B, H, n, d)``
    each (inputs ``(B, H, L, d)``, ``lse`` ``(B, H, L)`` from the flash forward). The n query rows
    meet all keys and the n key rows all queries: ``O(n L d)`` work instead of ``O(L^2 d)``;
    float32 arithmetic."""
    scale, dtype = q.shape[-1] ** -0.5, q.dtype
    q, k, v, grad_out, out = (t.float() for t in (q, k, v, grad_out, out))
    delta = (grad_out * out).sum(-1, keepdim=True)  # (B, H, L, 1): rowsum(dO * O)
    # the rows' queries against all keys
    p = torch.exp(q[:, :, rows] @ k.transpose(-1, -2) * scale - lse[:, :, rows, None])  # (B, H, n, L)
    grad_s = p * (grad_out[:, :, rows] @ v.transpose(-1, -2) - delta[:, :, rows])
    grad_q = grad_s @ k * scale
    # all queries against the rows' keys
    p = torch.exp(q @ k[:, :, rows].transpose(-1, -2) * scale - lse[..., None])  # (B, H, L, n)
    grad_v = p.transpose(-1, -2) @ grad_out
    grad_s = p * (grad_out @ v[:, :, rows].transpose(-1, -2) - delta)
    grad_k = grad_s.transpose(-1, -2) @ q * scale
    return grad_q.to(dtype), grad_k.to(dtype), grad_v.to(dtype)


def _mm(grad: torch.Tensor, weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Gradient of ``F.linear(input, weight)`` for its input, ``grad @ weight`` ``(..., in)``
    (one GEMM over all tokens; under autocast in its precision), as ``dtype``."""
    out = grad.reshape(-1, grad.shape[-1]) @ weight
    return out.view(*grad.shape[:-1], weight.shape[1]).to(dtype)


def _layer_norm_backward(
    grad: torch.Tensor, x: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor, norm: nn.LayerNorm
) -> torch.Tensor:
    """Gradient of ``layer_norm(x)`` for ``x``."""
    with torch.autocast(x.device.type, enabled=False):
        return torch.ops.aten.native_layer_norm_backward(  # expects contiguous rows
            grad.to(x.dtype).contiguous(),
            x.contiguous(),
            [x.shape[-1]],
            mean.contiguous(),
            rstd.contiguous(),
            norm.weight,
            norm.bias,
            [True, False, False],
        )[0]
