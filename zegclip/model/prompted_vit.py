"""CLIP's image tower with deep visual prompt tuning (VPT-deep), as ZegCLIP uses it (docs/method.md §1.2)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from open_clip.transformer import VisionTransformer
from torch import nn
from torch.utils.checkpoint import checkpoint

from zegclip.common.errors import ConfigError
from zegclip.model.blocks import block_forward, supports_fast_forward


class PromptedVisionTransformer(nn.Module):
    """Frozen open_clip ViT plus learnable prompt tokens inserted before its blocks.

    Tokens are ``[cls, N prompts, h*w patches]``. Layer 0 sees the shallow prompts; before
    layer ``i`` in ``1..deep_layers`` the prompt positions are replaced by
    ``prompt_proj(deep_prompt_embeddings[i-1])``; after the last deep layer the prompts are
    dropped (the official behaviour when ``0 < deep_layers < layers - 1``). With
    ``deep_layers=0`` (shallow VPT) the first layer's prompts flow through every layer.

    Args:
        vit: open_clip ``VisionTransformer``; its ``image_size`` is the training crop, which fixes
            the positional-embedding grid (resized bilinearly to the actual grid every forward).
        prompt_tokens: N, prompts per layer (0 disables prompting altogether).
        deep_layers: layers after the first that get fresh prompts (None: all, ``layers - 1``).
        prompt_dropout: dropout on the projected prompts.
        ft_backbone: train the CLIP tower too (the paper's fine-tuning ablation).
        grad_checkpointing: recompute each block's activations in the backward pass instead of
            keeping them (less memory, about one more forward pass of time).
    """

    def __init__(
        self,
        vit: VisionTransformer,
        prompt_tokens: int = 10,
        deep_layers: int | None = None,
        prompt_dropout: float = 0.1,
        ft_backbone: bool = False,
        grad_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        if vit.attn_pool is not None or getattr(vit, "final_ln_after_pool", False):
            raise ValueError("Only plain CLIP ViTs (token pooling, no attentional pooler) are supported")
        self.vit = vit
        self.width = vit.conv1.out_channels
        self.patch_size = vit.conv1.kernel_size[0]
        self.num_layers = len(vit.transformer.resblocks)
        self.train_grid = _grid(vit)
        self.prompt_tokens = prompt_tokens
        self.deep_layers = self.num_layers - 1 if deep_layers is None else deep_layers
        if not 0 <= self.deep_layers <= self.num_layers - 1:
            raise ConfigError(f"deep_layers must be in [0, {self.num_layers - 1}], got {deep_layers}")
        self.ft_backbone = ft_backbone
        self.grad_checkpointing = grad_checkpointing
        for p in self.vit.parameters():
            p.requires_grad_(ft_backbone)

        if prompt_tokens > 0:
            bound = math.sqrt(6.0 / float(3 * self.patch_size * self.patch_size + self.width))
            self.prompt_embeddings = nn.Parameter(
                torch.empty(1, prompt_tokens, self.width).uniform_(-bound, bound)
            )
            if self.deep_layers > 0:
                self.deep_prompt_embeddings = nn.Parameter(
                    torch.empty(self.deep_layers, prompt_tokens, self.width).uniform_(-bound, bound)
                )
            self.prompt_proj = nn.Linear(self.width, self.width)
            nn.init.kaiming_normal_(self.prompt_proj.weight, a=0, mode="fan_out")
            self.prompt_norm = nn.LayerNorm(self.width, eps=1e-6)
            self.prompt_dropout = nn.Dropout(prompt_dropout)

    @property
    def output_dim(self) -> int:
        return self.vit.proj.shape[1]

    def train(self, mode: bool = True) -> PromptedVisionTransformer:
        super().train(mode)
        if not self.ft_backbone:
            self.vit.eval()  # frozen weights stay in eval mode
        return self

    def positional_embedding(self, grid: tuple[int, int]) -> torch.Tensor:
        """``(1 + h*w, width)``: cls position (plus the class embedding, as officially) and the
        training-grid positions resized bilinearly to ``grid``."""
        pos = self.vit.positional_embedding
        cls_pos = pos[:1] + self.vit.class_embedding
        spatial = pos[1:].reshape(1, *self.train_grid, self.width).permute(0, 3, 1, 2)
        spatial = F.interpolate(spatial, size=grid, mode="bilinear", align_corners=False)
        return torch.cat([cls_pos, spatial.flatten(2).transpose(1, 2)[0]], dim=0)

    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Patch tokens with cls, positions and ``ln_pre``: ``(B, 1 + h*w, width)``, grid ``(h, w)``."""
        vit = self.vit
        x = vit.conv1(images)
        grid = (x.shape[2], x.shape[3])
        x = x.flatten(2).transpose(1, 2)
        cls = vit.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding(grid).to(x.dtype)
        return vit.ln_pre(x), grid

    def _prompts(self, embeddings: torch.Tensor, batch: int) -> torch.Tensor:
        return self.prompt_dropout(self.prompt_proj(embeddings)).expand(batch, -1, -1)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode images.

        Args:
            images: ``(B, 3, H, W)`` normalised pixels.

        Returns:
            global_embedding ``(B, D)`` and visual_embedding ``(B, D, H/p, W/p)``, both L2-normalised
            (the visual one per position); D is CLIP's joint embedding size.
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.ft_backbone):
            x, (h, w) = self.embed(images)
        batch, n = x.shape[0], self.prompt_tokens
        if n > 0:
            x = torch.cat([x[:, :1], self._prompts(self.prompt_embeddings, batch), x[:, 1:]], dim=1)

        recompute = self.grad_checkpointing and torch.is_grad_enabled()
        fresh = False  # x is the output of our own block forward, which nothing else holds
        for i, block in enumerate(self.vit.transformer.resblocks):
            if n > 0 and 1 <= i <= self.deep_layers:
                deep = self._prompts(self.deep_prompt_embeddings[i - 1], batch).to(x.dtype)
                if fresh:  # overwrite the prompt rows in place (no concatenation, forward or backward)
                    x[:, 1 : 1 + n] = deep
                else:
                    x = torch.cat([x[:, :1], deep, x[:, 1 + n :]], dim=1)
            elif n > 0 and self.deep_layers > 0 and i == self.deep_layers + 1:
                x = torch.cat([x[:, :1], x[:, -(h * w) :]], dim=1)
            fresh = supports_fast_forward(block)
            # the first block's input depends on trainable weights through its prompt rows only
            rows = slice(1, 1 + n) if i == 0 and n > 0 and not self.ft_backbone else None
            if recompute:
                x = checkpoint(self._run_block, block, x, rows, use_reentrant=False)
            else:
                x = self._run_block(block, x, rows)

        if n > 0:
            x = self.prompt_norm(x)
        x = self.vit.ln_post(x) @ self.vit.proj
        global_embedding = F.normalize(x[:, 0], dim=-1)
        visual = F.normalize(x[:, -(h * w) :], dim=-1)
        visual_embedding = visual.transpose(1, 2).reshape(batch, -1, h, w)
        return global_embedding, visual_embedding

    def _run_block(self, block: nn.Module, x: torch.Tensor, grad_rows: slice | None = None) -> torch.Tensor:
        """One transformer block on batch-first tokens ``(B, L, width)``; only ``grad_rows`` of
        ``x`` (None: all) need a gradient."""
        if supports_fast_forward(block):
            return block_forward(block, x, grad_rows)
        if getattr(self.vit.transformer, "batch_first", True):
            return block(x)
        return block(x.transpose(0, 1)).transpose(0, 1)


def _grid(vit: VisionTransformer) -> tuple[int, int]:
    grid = vit.grid_size
    return (grid, grid) if isinstance(grid, int) else (int(grid[0]), int(grid[1]))
