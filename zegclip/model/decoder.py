"""Relationship descriptor and the mask decoder (docs/method.md §1.3-1.4).

Class queries cross-attend to the patch tokens; each layer's attention logits (scaled,
before the softmax, averaged over heads) are that layer's mask logits. There is no
self-attention between queries (the official module holds unused self-attention weights,
which we drop), and the last layer stops at its logits: its value/output projections and FFN
would only produce queries that nothing reads, so they do not exist here.
"""

from __future__ import annotations

import torch
from torch import nn

from zegclip.common.errors import ConfigError


class RelationshipDescriptor(nn.Module):
    """``q_c = Linear([t_c * g, t_c])`` per image and class; ``Linear(t_c)`` when disabled (ablation).

    Args:
        dim: CLIP's joint embedding size D.
        enabled: use the image-conditioned descriptor (False: queries from text only).
    """

    def __init__(self, dim: int, enabled: bool = True) -> None:
        super().__init__()
        self.enabled = enabled
        self.q_proj = nn.Linear(2 * dim if enabled else dim, dim)

    def forward(self, text_embeddings: torch.Tensor, global_embedding: torch.Tensor) -> torch.Tensor:
        """text ``(C, D)``, global ``(B, D)`` -> queries ``(B, C, D)``."""
        text = text_embeddings.to(global_embedding.dtype).expand(global_embedding.shape[0], -1, -1)
        if not self.enabled:
            return self.q_proj(text)
        return self.q_proj(torch.cat([text * global_embedding[:, None, :], text], dim=-1))


class DecoderLayer(nn.Module):
    """Post-norm cross-attention layer: ``LN(q + attn(q, v))`` then ``LN(q + FFN(q))``.

    With ``logits_only`` the layer has just the query/key projections and returns no queries.

    Args:
        dim: width D; heads: attention heads; dropout: attention, residual and FFN dropout.
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.1, logits_only: bool = False) -> None:
        super().__init__()
        if dim % heads:
            raise ConfigError(f"decoder width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.logits_only = logits_only
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        if not logits_only:
            self.v = nn.Linear(dim, dim)
            self.proj = nn.Linear(dim, dim)
            self.attn_dropout = nn.Dropout(dropout)
            self.dropout_attn_out = nn.Dropout(dropout)
            self.norm_attn = nn.LayerNorm(dim)
            self.ffn = nn.Sequential(
                nn.Linear(dim, 4 * dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(4 * dim, dim)
            )
            self.dropout_ffn_out = nn.Dropout(dropout)
            self.norm_ffn = nn.LayerNorm(dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        return x.reshape(b, n, self.heads, d // self.heads).transpose(1, 2)

    def forward(
        self, queries: torch.Tensor, memory: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """queries ``(B, C, D)``, memory ``(B, N, D)`` -> (new queries ``(B, C, D)`` or None,
        mask logits ``(B, C, N)``)."""
        q = self._split(self.q(queries))
        k = self._split(self.k(memory))
        attn = (q @ k.transpose(-2, -1)) * self.scale  # (B, heads, C, N)
        logits = attn.mean(dim=1)
        if self.logits_only:
            return None, logits
        v = self._split(self.v(memory))
        out = (self.attn_dropout(attn.softmax(dim=-1)) @ v).transpose(1, 2).flatten(2)
        x = self.norm_attn(queries + self.dropout_attn_out(self.proj(out)))
        x = self.norm_ffn(x + self.dropout_ffn_out(self.ffn(x)))
        return x, logits


class MaskDecoder(nn.Module):
    """Stack of :class:`DecoderLayer`; the last one yields logits only.

    Args:
        dim: width D (CLIP's joint embedding size); layers; heads; dropout.
    """

    def __init__(self, dim: int, layers: int = 3, heads: int = 8, dropout: float = 0.1) -> None:
        super().__init__()
        if layers < 1:
            raise ConfigError(f"decoder needs at least one layer, got {layers}")
        self.layers = nn.ModuleList(
            DecoderLayer(dim, heads, dropout, logits_only=(i == layers - 1)) for i in range(layers)
        )

    def forward(
        self, queries: torch.Tensor, memory: torch.Tensor
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """queries ``(B, C, D)``, memory ``(B, N, D)`` -> (queries after each layer but the last,
        mask logits ``(B, C, N)`` of every layer)."""
        all_queries, all_logits = [], []
        for layer in self.layers:
            new_queries, logits = layer(queries, memory)
            all_logits.append(logits)
            if new_queries is not None:
                queries = new_queries
                all_queries.append(queries)
        return all_queries, all_logits
