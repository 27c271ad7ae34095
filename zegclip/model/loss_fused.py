"""The fast path of ZegCLIP's focal + dice loss: :func:`fused_focal_dice`, the numbers of the plain
definition (:func:`zegclip.model.loss.focal_dice`, to float32 rounding) without one-hot targets or
full-size temporaries. :class:`zegclip.model.loss.FocalDiceLoss` uses it by default (training).

What it saves, measured (``python benchmarks/loss_benchmark.py [--logit-size 32]``, COCO-Stuff
scale: B=2, C=156 seen classes, 512x512 labels, one forward+backward, AMD EPYC Zen 4 with 2 threads,
torch 2.14; benchmarks/results/loss_benchmark_cpu{_grid,}.md):

=================================  =====================  =====================
logits                             plain: time / memory   fused: time / memory
=================================  =====================  =====================
32x32 grid (what training passes)  5.4 s / 3.8 GiB        0.87 s / 80 MiB
512x512 (full size)                5.0 s / 3.5 GiB        1.4 s / 0.4 GiB
=================================  =====================  =====================

(peak memory beyond the inputs, the logits' gradient included). The plain definition's
``(B, C, H, W)`` upsampled logits, one-hot targets and temporaries grow with the class count:
several GiB per image at 847 classes, on a GPU too.

How:

* the focal loss over all classes is ``sum over all (image, class, pixel) of the negative
  term`` plus, at each labelled pixel, ``positive term - negative term`` of its own class.
  Ignore pixels thus count as negatives for every class, as officially.
* the full-size sums (negative focal term and ``sum(sigmoid)`` for dice) come from one
  autograd function that works in chunks; everything at labelled pixels is a gather of one
  value per pixel.
* logits smaller than the labels (the model's ``(B, C, 32, 32)`` grid against 512x512 crops)
  are upsampled one chunk of (image, class) rows at a time, bilinearly with ``F.interpolate``'s
  weights (``A_h @ X @ A_w^T``). Upsampling is linear, so the gradient at the grid is the
  upsampling's adjoint applied to the full-size gradient; since the upstream gradient of each
  row's sums is one scalar, the forward pass stores, per row, the adjoint of the elementwise
  derivatives at grid size, and the backward pass only scales them. Labelled pixels read their
  four grid neighbours. Neither the full-size logits nor their gradient ever exist; losses and
  gradients equal those of upsampling first to float32 rounding.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


class FusedTerms(NamedTuple):
    """What :func:`fused_focal_dice` computes; :class:`~zegclip.model.loss.FocalDiceLoss` weights it."""

    focal: torch.Tensor
    """``()``: the focal loss's pixel mean, summed over images and classes (before ``/ num_masks``)."""
    dice: torch.Tensor
    """``(B * C,)``: the dice loss of every (image, class) pair."""
    present: torch.Tensor
    """``(B * C,)`` bool: the pairs whose class has a labelled pixel in the image."""
    predicted: torch.Tensor
    """``(B, H * W)``: the class of the largest (upsampled) logit at every pixel (no gradient)."""


def fused_focal_dice(
    logits: torch.Tensor,
    labels: torch.Tensor,
    alpha: float,
    gamma: float,
    ignore_index: int,
    chunk_elements: int,
) -> FusedTerms:
    """The terms of the focal + dice loss of ``logits`` ``(B, C, h, w)`` (float32 or lower; upsampled
    bilinearly to the label size chunk by chunk if smaller) against checked ``labels`` ``(B, H, W)``
    (long, values ``0..C-1`` and ``ignore_index``); ``chunk_elements`` full-size logits at a time."""
    b, c = logits.shape[:2]
    size = tuple(labels.shape[-2:])
    upsample = tuple(logits.shape[-2:]) != size
    num_pixels = size[0] * size[1]
    labels = labels.flatten(1)
    valid = labels != ignore_index
    chunk = max(1, chunk_elements // max(num_pixels, 1))
    image_idx, pixel_idx = valid.nonzero(as_tuple=True)
    class_idx = labels[image_idx, pixel_idx]
    # x_target: the logit of the true class at each labelled pixel
    if upsample:
        neg_sum, sig_sum, predicted = _UpsampledTerms.apply(logits, size, alpha, gamma, chunk)
        x_target = _bilinear_sample(logits.float(), image_idx, class_idx, pixel_idx, size)
    else:
        x = logits.flatten(2)  # (B, C, P)
        neg_sum, sig_sum, x_target = _FullSizeTerms.apply(
            x, image_idx, class_idx, pixel_idx, alpha, gamma, chunk
        )
        with torch.no_grad():
            predicted = x.argmax(dim=1)
    pos, neg = _focal_terms(x_target, alpha, gamma)
    focal = (neg_sum.sum() + (pos - neg).sum()) / num_pixels

    pair = image_idx * c + class_idx  # (image, class) pair of each labelled pixel
    intersection = torch.zeros(b * c, device=logits.device, dtype=torch.float32).index_add(
        0, pair, x_target.sigmoid()
    )
    target_sum = torch.bincount(pair, minlength=b * c).to(torch.float32)
    dice = 1 - (2 * intersection + 1) / (sig_sum.reshape(-1) + target_sum + 1)
    return FusedTerms(focal, dice, target_sum > 0, predicted)


def _focal_terms(x: torch.Tensor, alpha: float, gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Positive and negative focal terms of logits ``x`` (any shape): the loss where the target is 1, 0."""
    p = x.sigmoid()
    pos = alpha * (1 - p).pow(gamma) * F.softplus(-x)
    neg = (1 - alpha) * p.pow(gamma) * F.softplus(x)
    return pos, neg


class _FullSizeTerms(torch.autograd.Function):
    """The parts of the loss that touch every logit, without full-size intermediates.

    Forward, for logits ``(B, C, P)`` and the labelled pixels (``image, class, pixel`` index
    triples): per (image, class) ``sum_p (1-alpha) sigmoid^gamma softplus`` and ``sum_p
    sigmoid``, and the logit of the true class at each labelled pixel. Rows are processed
    ``chunk`` at a time; backward recomputes from the saved logits and scatters the labelled
    pixels' gradients into the same buffer.
    """

    @staticmethod
    def forward(ctx, logits, image_idx, class_idx, pixel_idx, alpha: float, gamma: float, chunk: int):  # type: ignore[override]
        b, c, p = logits.shape
        rows = logits.reshape(b * c, p)
        neg = logits.new_empty(b * c, dtype=torch.float32)
        sig = logits.new_empty(b * c, dtype=torch.float32)
        for start in range(0, b * c, chunk):
            x = rows[start : start + chunk].float()
            prob = x.sigmoid()
            neg[start : start + chunk] = ((1 - alpha) * prob.pow(gamma) * F.softplus(x)).sum(-1)
            sig[start : start + chunk] = prob.sum(-1)
        x_target = logits[image_idx, class_idx, pixel_idx].float()
        ctx.save_for_backward(logits, image_idx, class_idx, pixel_idx)
        ctx.alpha, ctx.gamma, ctx.chunk = alpha, gamma, chunk
        return neg.reshape(b, c), sig.reshape(b, c), x_target

    @staticmethod
    def backward(ctx, grad_neg, grad_sig, grad_target):  # type: ignore[override]
        with torch.autocast(grad_neg.device.type, enabled=False):
            return _FullSizeTerms._backward(ctx, grad_neg, grad_sig, grad_target)

    @staticmethod
    def _backward(ctx, grad_neg, grad_sig, grad_target):
        logits, image_idx, class_idx, pixel_idx = ctx.saved_tensors
        alpha, gamma, chunk = ctx.alpha, ctx.gamma, ctx.chunk
        b, c, p = logits.shape
        rows = logits.reshape(b * c, p)
        grad_neg, grad_sig = grad_neg.reshape(-1), grad_sig.reshape(-1)
        grad = torch.empty_like(logits)
        grad_rows = grad.view(b * c, p)
        for start in range(0, b * c, chunk):
            x = rows[start : start + chunk].float()
            prob = x.sigmoid()
            d_neg = (1 - alpha) * prob.pow(gamma) * (gamma * (1 - prob) * F.softplus(x) + prob)
            d_sig = prob * (1 - prob)
            g = grad_neg[start : start + chunk, None] * d_neg + grad_sig[start : start + chunk, None] * d_sig
            grad_rows[start : start + chunk] = g.to(grad.dtype)
        grad.index_put_((image_idx, class_idx, pixel_idx), grad_target.to(grad.dtype), accumulate=True)
        return grad, None, None, None, None, None, None


def _bilinear_taps(n_in: int, n_out: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Source indices ``i0, i1`` and weights ``w0, w1`` ``(n_out,)`` of bilinear resizing with
    ``align_corners=False`` along one axis, computed as PyTorch's kernels do."""
    scale = torch.tensor(n_in / n_out, dtype=torch.float32)
    src = ((torch.arange(n_out, dtype=torch.float32) + 0.5) * scale - 0.5).clamp_min(0)
    i0 = src.long()  # floor: src >= 0
    w1 = (src - i0).clamp(0, 1)
    i1 = i0 + (i0 < n_in - 1).long()
    return tuple(t.to(device) for t in (i0, i1, 1 - w1, w1))


def _interpolation_matrix(n_in: int, n_out: int, device: torch.device) -> torch.Tensor:
    """``(n_out, n_in)``: bilinear resizing along one axis (``align_corners=False``) as a matrix,
    so that upsampling a plane is ``A_h @ X @ A_w^T`` and its adjoint ``A_h^T @ G @ A_w``."""
    i0, i1, w0, w1 = _bilinear_taps(n_in, n_out, device)
    matrix = torch.zeros(n_out, n_in, device=device)
    rows = torch.arange(n_out, device=device)
    matrix.index_put_((rows, i0), w0, accumulate=True)
    return matrix.index_put_((rows, i1), w1, accumulate=True)


def _bilinear_sample(
    grid: torch.Tensor,
    image_idx: torch.Tensor,
    class_idx: torch.Tensor,
    pixel_idx: torch.Tensor,
    size: tuple[int, int],
) -> torch.Tensor:
    """Values of ``grid`` ``(B, C, h, w)`` upsampled bilinearly to ``size`` at the given
    (image, class, flat pixel) triples ``(N,)``, from each pixel's four grid neighbours (the
    upsampling's own weights, in its order of operations; differentiable)."""
    b, c, h, w = grid.shape
    height, width = size
    y0, y1, wy0, wy1 = _bilinear_taps(h, height, grid.device)
    x0, x1, wx0, wx1 = _bilinear_taps(w, width, grid.device)
    py, px = pixel_idx // width, pixel_idx % width
    flat = grid.reshape(-1)
    base = (image_idx * c + class_idx) * (h * w)

    def row(ys: torch.Tensor) -> torch.Tensor:
        top = base + ys[py] * w
        return wx0[px] * flat[top + x0[px]] + wx1[px] * flat[top + x1[px]]

    return wy0[py] * row(y0) + wy1[py] * row(y1)


class _UpsampledTerms(torch.autograd.Function):
    """:class:`_FullSizeTerms` for grid logits ``(B, C, h, w)`` upsampled to ``size`` chunk by chunk.

    Forward returns per (image, class) the negative focal sum and ``sum(sigmoid)`` ``(B, C)``, and
    per image and full-size pixel the class of the largest upsampled logit ``(B, H*W)`` (for the
    pixel accuracy). The upsampling is ``A_h @ X @ A_w^T`` (two small GEMMs per chunk); the
    backward pass needs, per row, only the adjoints ``A_h^T @ (d/dx) @ A_w`` of the two sums'
    elementwise derivatives, which the forward pass computes while the chunk is in cache and
    keeps at grid size.
    """

    @staticmethod
    def forward(ctx, grid, size: tuple[int, int], alpha: float, gamma: float, chunk: int):  # type: ignore[override]
        b, c, h, w = grid.shape
        height, width = size
        rows = grid.detach().float().reshape(b * c, h, w)
        a_h = _interpolation_matrix(h, height, grid.device)  # (H, h)
        a_w = _interpolation_matrix(w, width, grid.device)  # (W, w)
        want_grad = ctx.needs_input_grad[0]
        neg, sig = rows.new_empty(b * c), rows.new_empty(b * c)
        d_grid = rows.new_empty(2, b * c, h, w) if want_grad else None  # adjoints of d neg, d sig
        best_val = rows.new_full((b, height * width), -float("inf"))
        best_cls = torch.zeros(b, height * width, dtype=torch.long, device=grid.device)
        # chunk buffers, reused: fresh multi-MiB allocations cost page faults on every chunk
        chunk = min(chunk, b * c)
        buffers = rows.new_empty(4, chunk, height * width)  # x, p, then d neg / d sig (adjacent)
        better = torch.empty(height * width, dtype=torch.bool, device=grid.device)
        for start in range(0, b * c, chunk):
            end = min(start + chunk, b * c)
            r = end - start
            x, prob, prob_g, one_minus = (buf[:r] for buf in buffers)
            torch.matmul(a_h, rows[start:end] @ a_w.T, out=x.view(r, height, width))
            for row in range(start, end):  # running argmax over the classes (first maximum wins)
                image, cls = divmod(row, c)
                torch.gt(x[row - start], best_val[image], out=better)
                torch.maximum(best_val[image], x[row - start], out=best_val[image])
                best_cls[image].masked_fill_(better, cls)
            torch.sigmoid(x, out=prob)
            torch.pow(prob, gamma, out=prob_g)
            term = torch._C._nn.softplus(x, 1, 20, out=x).mul_(prob_g)  # p^g softplus(x), over x
            torch.sum(term, -1, out=neg[start:end])
            torch.sum(prob, -1, out=sig[start:end])
            if want_grad:
                torch.mul(prob, -1, out=one_minus).add_(1)
                # d neg / dx = (1-a) p^g (g (1-p) softplus + p); (1-a) is applied at the grid
                prob_g.mul_(prob).addcmul_(term, one_minus, value=gamma)
                one_minus.mul_(prob)  # d sig / dx = p (1 - p)
                derivatives = buffers[2:, :r].reshape(2 * r * height, width)  # a view unless r < chunk
                # adjoint of the upsampling, both derivatives at once: A_h^T @ G @ A_w
                adjoint = torch.matmul(a_h.T, (derivatives @ a_w).view(2 * r, height, w))
                d_grid[:, start:end] = adjoint.view(2, r, h, w)
        neg.mul_(1 - alpha)
        if want_grad:
            ctx.save_for_backward(d_grid)
        ctx.alpha, ctx.grid_dtype = alpha, grid.dtype
        ctx.mark_non_differentiable(best_cls)
        return neg.reshape(b, c), sig.reshape(b, c), best_cls

    @staticmethod
    def backward(ctx, grad_neg, grad_sig, _):  # type: ignore[override]
        (d_grid,) = ctx.saved_tensors
        with torch.autocast(grad_neg.device.type, enabled=False):
            rows = d_grid.shape[1]
            grad = ((1 - ctx.alpha) * grad_neg.reshape(rows, 1, 1) * d_grid[0]).addcmul_(
                grad_sig.reshape(rows, 1, 1), d_grid[1]
            )
        return grad.view(*grad_neg.shape, *grad.shape[-2:]).to(ctx.grid_dtype), None, None, None, None
