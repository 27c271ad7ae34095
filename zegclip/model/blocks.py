"""A fast forward of open_clip's frozen ``ResidualAttentionBlock`` over its own weights.

open_clip drives ``nn.MultiheadAttention`` batch-first: the module transposes its input to
token-major ``(L, B, D)``, and the in-projection of that non-contiguous tensor reaches
``matmul``'s broadcast path, which runs one small ``bmm`` per token (1,035 of them for a 512
crop with 10 prompts) in the backward pass and under autocast. Here the same computation is
written on a contiguous ``(B, L, D)`` tensor: one GEMM for q, k and v, one
``scaled_dot_product_attention``, one GEMM for the output projection, then open_clip's own
``ln_2`` / ``mlp`` / layer scales. Numbers equal the block's forward to float32 rounding
(``tests/test_model_blocks.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from open_clip.transformer import ResidualAttentionBlock
from torch import nn


def supports_fast_forward(block: nn.Module) -> bool:
    """True for a plain self-attention ``ResidualAttentionBlock`` (packed in-projection, no
    attention dropout, no cross-attention norm); other blocks run their own forward."""
    if type(block) is not ResidualAttentionBlock or hasattr(block, "ln_1_kv"):
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


def attention(attn: nn.MultiheadAttention, x: torch.Tensor) -> torch.Tensor:
    """Self-attention of ``x`` ``(B, L, D)`` with ``attn``'s weights, ``(B, L, D)``."""
    b, length, width = x.shape
    heads = attn.num_heads
    qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias)  # (B, L, 3D): one GEMM
    q, k, v = qkv.view(b, length, 3, heads, width // heads).permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, L, d)
    out = F.scaled_dot_product_attention(q, k, v)
    out = out.transpose(1, 2).reshape(b, length, width)
    return F.linear(out, attn.out_proj.weight, attn.out_proj.bias)


def block_forward(block: ResidualAttentionBlock, x: torch.Tensor) -> torch.Tensor:
    """``block(x)`` for batch-first ``x`` ``(B, L, D)`` (see the module docstring), ``(B, L, D)``."""
    x = x.contiguous()
    x = x + block.ls_1(attention(block.attn, block.ln_1(x)))
    return x + block.ls_2(block.mlp(block.ln_2(x)))
