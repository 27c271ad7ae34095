"""The loss: both implementations (the plain definition ``focal_dice`` and the fused fast path, the
default) against a float64 transcription of docs/method.md §2 and against each other (values and
gradients: fp32, bf16, autocast, ignore pixels, absent classes, unlabelled images, grid logits, every
decoder layer), the switch and its config, chunking, label checks, and ``num_masks`` / DDP training
under a real 2-process gloo group."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from zegclip.common.constants import IGNORE_INDEX
from zegclip.common.errors import ConfigError
from zegclip.model.loss import FocalDiceLoss, dice_loss, focal_dice, global_num_masks, sigmoid_focal_loss

IMPLEMENTATIONS = ["plain", "fused"]


def reference_loss(logits: torch.Tensor, labels: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0):
    """docs/method.md §2 as written: one-hot targets over all classes, focal BCE with ignore pixels
    as negatives, dice over present (image, class) pairs; returns (loss_mask, loss_dice, accuracy %)."""
    b, c = logits.shape[:2]
    if logits.shape[-2:] != labels.shape[-2:]:
        logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    target = torch.stack([torch.stack([labels[i] == k for k in range(c)]) for i in range(b)]).to(logits.dtype)
    prob = logits.sigmoid()
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = prob * target + (1 - prob) * (1 - target)
    focal = (alpha * target + (1 - alpha) * (1 - target)) * (1 - p_t) ** gamma * bce
    present = target.flatten(2).sum(-1) > 0  # (B, C)
    num_masks = max(int(present.sum()), 1)
    p, t = prob.flatten(2)[present], target.flatten(2)[present]
    dice = 1 - (2 * (p * t).sum(-1) + 1) / (p.sum(-1) + t.sum(-1) + 1)
    loss_mask = 100 * focal.flatten(2).mean(-1).sum() / num_masks
    loss_dice = dice.sum() / num_masks
    valid = labels != IGNORE_INDEX
    correct = (logits.argmax(1) == labels)[valid].double()
    accuracy = correct.mean() * 100 if valid.any() else torch.zeros(())  # no labelled pixel: 0 by convention
    return loss_mask, loss_dice, accuracy


def make_case(seed: int, b: int = 3, c: int = 5, size: int = 24, logit_size: int | None = None):
    g = torch.Generator().manual_seed(seed)
    ls = logit_size or size
    logits = torch.randn(b, c, ls, ls, generator=g) * 3
    big = torch.rand(b, c, ls, ls, generator=g) < 0.1  # some saturated logits, both signs
    logits[big] = (torch.rand(int(big.sum()), generator=g) * 60 + 20) * torch.sign(
        torch.randn(int(big.sum()), generator=g)
    )
    labels = torch.randint(0, c, (b, size, size), generator=g)
    labels[torch.rand(b, size, size, generator=g) < 0.2] = IGNORE_INDEX
    labels[0][labels[0] == 1] = IGNORE_INDEX  # class 1 absent from image 0
    labels[0][labels[0] == 3] = 2  # class 3 too
    labels[-1] = IGNORE_INDEX  # an image without labelled pixels
    return logits, labels


def compare(logits: torch.Tensor, labels: torch.Tensor, **loss_kwargs) -> None:
    """FocalDiceLoss(**loss_kwargs) on float32 logits against :func:`reference_loss` in float64."""
    ours_in = logits.clone().requires_grad_(True)
    ours = FocalDiceLoss(**loss_kwargs)(ours_in, labels)
    ours.total.backward()
    ref_in = logits.double().requires_grad_(True)
    ref_mask, ref_dice, ref_acc = reference_loss(ref_in, labels)
    (ref_mask + ref_dice).backward()

    for name, a, r in [("loss_mask", ours.loss_mask, ref_mask), ("loss_dice", ours.loss_dice, ref_dice)]:
        err = abs(a.item() - r.item())
        assert err <= 1e-5 * max(1.0, abs(r.item())), f"{name}: {a.item()} vs {r.item()}"
    assert torch.allclose(ours.total, ours.loss_mask + ours.loss_dice)
    assert abs(ours.accuracy.item() - ref_acc.item()) < 1e-4
    scale = ref_in.grad.abs().max().item()
    err = (ours_in.grad.double() - ref_in.grad).abs().max().item()
    assert err <= 1e-5 * scale, f"gradient error {err:.3g} > 1e-5 x {scale:.3g}"
    present = sum(len(set(labels[i][labels[i] != IGNORE_INDEX].tolist())) for i in range(labels.shape[0]))
    assert ours.num_masks == max(present, 1)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_reference_same_resolution(seed, implementation):
    compare(*make_case(seed), implementation=implementation)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_matches_reference_with_upsampling(implementation):
    logits, labels = make_case(2, b=2, c=4, size=32, logit_size=8)
    assert logits.shape[-1] != labels.shape[-1]
    compare(logits, labels, implementation=implementation)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_matches_reference_when_no_pixel_is_labelled(implementation):
    logits, labels = make_case(3)
    labels[:] = IGNORE_INDEX
    compare(logits, labels, implementation=implementation)
    out = FocalDiceLoss(implementation=implementation)(logits, labels)
    assert out.num_masks == 1.0 and out.loss_dice.item() == 0.0 and out.loss_mask.item() > 0


# ----------------------------------------------------------------------------- the plain definition


def test_plain_definition_in_float64_is_the_reference():
    """focal_dice keeps float64 logits in float64: the definition, to float64 rounding."""
    logits, labels = make_case(9, b=2, c=4, size=16)
    x = logits.double().requires_grad_(True)
    out = focal_dice(x, labels)
    assert out.loss_mask.dtype == torch.float64
    ref_in = logits.double().requires_grad_(True)
    ref_mask, ref_dice, _ = reference_loss(ref_in, labels)
    assert abs(out.loss_mask.item() - ref_mask.item()) <= 1e-12 * ref_mask.item()
    assert abs(out.loss_dice.item() - ref_dice.item()) <= 1e-12 * ref_dice.item()
    out.total.backward()
    (ref_mask + ref_dice).backward()
    assert (x.grad - ref_in.grad).abs().max() <= 1e-12 * ref_in.grad.abs().max()


def test_focal_and_dice_terms_by_hand():
    """One pixel per mask, values worked out by hand: focal = alpha_t (1 - p_t)^gamma BCE, dice with +1."""
    logits = torch.tensor([0.0, 2.0]).view(1, 2, 1, 1)
    targets = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)
    p = torch.sigmoid(torch.tensor(2.0)).item()
    expected_focal = [
        0.25 * 0.5**2 * torch.log(torch.tensor(2.0)).item(),
        0.75 * p**2 * -torch.log(torch.tensor(1 - p)).item(),
    ]
    assert torch.allclose(sigmoid_focal_loss(logits, targets), torch.tensor([expected_focal]), rtol=1e-6)
    expected_dice = [1 - (2 * 0.5 + 1) / (0.5 + 1 + 1), 1 - 1 / (p + 0 + 1)]
    assert torch.allclose(dice_loss(logits, targets), torch.tensor([expected_dice]), rtol=1e-6)


# ----------------------------------------------------------------------------- fused = plain


def run_both(logits: torch.Tensor, labels: torch.Tensor, **kwargs):
    """(plain, fused): each implementation's output and the gradient of its total at ``logits``."""
    results = []
    for implementation in IMPLEMENTATIONS:
        x = logits.clone().requires_grad_(True)
        out = FocalDiceLoss(implementation=implementation, **kwargs)(x, labels)
        out.total.backward()
        results.append((out, x.grad))
    return results


def assert_equal_losses(plain, fused, rtol: float = 2e-6) -> None:
    for name in ("loss_mask", "loss_dice", "total"):
        a, b = getattr(plain, name), getattr(fused, name)
        assert a.dtype == b.dtype == torch.float32, name
        assert abs(a.item() - b.item()) <= rtol * max(abs(a.item()), 1e-3), (
            f"{name}: plain {a.item()} fused {b.item()}"
        )
    assert torch.equal(plain.accuracy, fused.accuracy) and plain.num_masks == fused.num_masks


def labelled_case(kind: str):
    """make_case variants: ignore pixels, classes absent from an image, an image without labels."""
    if kind == "full size":
        return make_case(10, b=3, c=6, size=24)
    if kind == "grid 8->32":
        return make_case(11, b=3, c=5, size=32, logit_size=8)
    if kind == "grid 4->64 many classes":
        return make_case(12, b=2, c=20, size=64, logit_size=4)
    logits, labels = make_case(13, b=2, c=4, size=16)
    labels[:] = IGNORE_INDEX  # "nothing labelled": focal over negatives only, no dice
    return logits, labels


@pytest.mark.parametrize("kind", ["full size", "grid 8->32", "grid 4->64 many classes", "nothing labelled"])
def test_fused_equals_plain_in_fp32(kind):
    logits, labels = labelled_case(kind)
    (plain, plain_grad), (fused, fused_grad) = run_both(logits, labels)
    assert_equal_losses(plain, fused)
    scale = plain_grad.abs().max()  # a grid logit's gradient sums up to 16 x 16 pixels' in float32
    assert (fused_grad - plain_grad).abs().max() <= 1e-5 * scale
    if kind != "nothing labelled":  # the cases have ignore pixels and absent (image, class) pairs
        assert (labels == IGNORE_INDEX).any() and plain.num_masks < labels.shape[0] * logits.shape[1]


def test_fused_equals_plain_with_other_weights_and_focal_parameters():
    logits, labels = make_case(14, b=2, c=4, size=20, logit_size=5)
    kwargs = {"focal_weight": 20.0, "dice_weight": 3.0, "alpha": 0.6, "gamma": 1.5}
    (plain, plain_grad), (fused, fused_grad) = run_both(logits, labels, **kwargs)
    assert_equal_losses(plain, fused)
    assert (fused_grad - plain_grad).abs().max() <= 1e-5 * plain_grad.abs().max()
    default = FocalDiceLoss(implementation="plain")(logits, labels)
    assert abs(default.loss_mask.item() - plain.loss_mask.item()) > 1e-3  # the parameters were used


@pytest.mark.parametrize("logit_size", [8, 32])
def test_fused_equals_plain_with_bf16_logits_and_under_autocast(logit_size):
    """bf16 logits (bf16-mixed training), inside autocast: both compute in fp32 (equal to their fp32
    result), and their bf16 gradients agree to bf16 rounding."""
    logits, labels = make_case(15, b=2, c=5, size=32, logit_size=logit_size)
    low = logits.bfloat16()
    outputs = []
    for implementation in IMPLEMENTATIONS:
        x = low.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = FocalDiceLoss(implementation=implementation)(x, labels)
            out.total.backward()
        assert x.grad.dtype == torch.bfloat16
        upcast = FocalDiceLoss(implementation=implementation)(low.float(), labels)
        assert torch.equal(out.total, upcast.total), f"{implementation}: autocast or bf16 changed the loss"
        outputs.append((out, x.grad))
    (plain, plain_grad), (fused, fused_grad) = outputs
    assert_equal_losses(plain, fused)
    scale = plain_grad.float().abs().max()
    assert (fused_grad.float() - plain_grad.float()).abs().max() <= 2**-7 * scale


def test_fused_equals_plain_on_every_decoder_layer():
    """Deep supervision's sum over the decoder layers' logits (``loss.aux_layers``): the same
    parameter gradients from both implementations."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from tiny_model import TINY_ARCH

    from zegclip import CLIPConfig, ZegCLIP, ZegCLIPConfig

    torch.manual_seed(0)
    model = ZegCLIP(
        ZegCLIPConfig(clip=CLIPConfig(arch=TINY_ARCH), image_size=64, prompt_tokens=3, decoder_heads=4)
    )
    model.train()
    text = model.class_embeddings(["a", "b", "c", "d"])
    gen = torch.Generator().manual_seed(1)
    images = torch.randn(2, 3, 64, 64, generator=gen)
    labels = torch.randint(0, 4, (2, 64, 64), generator=gen)
    labels[:, :8] = IGNORE_INDEX
    labels[1][labels[1] == 2] = 3  # class 2 absent from image 1
    grads, totals = [], []
    for implementation in IMPLEMENTATIONS:
        model.zero_grad()
        torch.manual_seed(2)  # the same dropout
        out = model(images, text)
        assert len(out.layer_logits) == 3 and out.layer_logits[0].shape[-2:] == (4, 4)
        criterion = FocalDiceLoss(implementation=implementation)
        total = sum(criterion(layer, labels).total for layer in out.layer_logits)
        total.backward()
        totals.append(total.item())
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert abs(totals[0] - totals[1]) <= 2e-6 * totals[0]
    assert grads[0].keys() == grads[1].keys() and grads[0]
    scale = max(g.abs().max() for g in grads[0].values())
    for name, grad in grads[0].items():
        assert (grads[1][name] - grad).abs().max() <= 1e-5 * scale, name


# ----------------------------------------------------------------------------- the switch


def test_fused_is_the_default():
    assert FocalDiceLoss().implementation == "fused"


def test_unknown_implementation_is_a_config_error():
    with pytest.raises(
        ConfigError, match=r"loss\.implementation must be one of 'fused', 'plain', got 'fast'"
    ):
        FocalDiceLoss(implementation="fast")


def test_loss_config_selects_the_implementation(tmp_path):
    """The composed training config builds the fused loss (``loss.implementation: fused``), and so does
    a loss config without the key (old checkpoints' hyper-parameters); ``loss.implementation=plain``
    the plain one; ``cross_entropy`` takes no implementation."""
    from hydra_compose import compose_config
    from omegaconf import OmegaConf

    from zegclip.training.module import build_criterion

    for overrides, expected in [
        (["dataset=voc"], "fused"),
        (["dataset=voc", "loss.implementation=plain"], "plain"),
    ]:
        cfg = compose_config("train", overrides, tmp_path)
        criterion, name, aux = build_criterion(OmegaConf.to_container(cfg.loss, resolve=True))
        assert isinstance(criterion, FocalDiceLoss) and name == "focal_dice" and not aux
        assert criterion.implementation == expected
    old, _, _ = build_criterion({"name": "focal_dice"})
    assert old.implementation == "fused"
    cross_entropy, name, _ = build_criterion({"name": "cross_entropy", "implementation": "fused"})
    assert name == "cross_entropy" and not isinstance(cross_entropy, FocalDiceLoss)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_accepts_b1hw_labels(implementation):
    logits, labels = make_case(4)
    loss = FocalDiceLoss(implementation=implementation)
    a, b = loss(logits, labels), loss(logits, labels[:, None])
    assert torch.equal(a.total, b.total)


def test_bf16_logits_are_computed_in_fp32():
    logits, labels = make_case(8)
    low = logits.bfloat16().requires_grad_(True)
    upcast = low.detach().float().requires_grad_(True)
    a, b = FocalDiceLoss()(low, labels), FocalDiceLoss()(upcast, labels)
    assert a.total.dtype == torch.float32
    assert torch.equal(a.loss_mask, b.loss_mask) and torch.equal(a.loss_dice, b.loss_dice)
    a.total.backward()
    b.total.backward()
    assert low.grad.dtype == torch.bfloat16
    # bf16 gradient: two paths (all pixels, labelled pixels) each rounded to bf16, then summed
    assert (low.grad.float() - upcast.grad).abs().max() <= 2**-6 * upcast.grad.abs().max()


def test_chunking_gives_identical_results():
    logits, labels = make_case(5, b=2, c=6, size=20)
    results = []
    for chunk in (1 << 22, 1000, 1):  # all rows at once, 2 rows per chunk, 1 row per chunk
        x = logits.clone().requires_grad_(True)
        out = FocalDiceLoss(chunk_elements=chunk)(x, labels)
        out.total.backward()
        results.append((out.loss_mask.detach(), out.loss_dice.detach(), x.grad))
    scale = results[0][2].abs().max()
    for mask, dice, grad in results[1:]:
        assert torch.equal(mask, results[0][0]) and torch.equal(dice, results[0][1])  # bit-identical sums
        # gradients: elementwise, up to the last bit (vectorised vs scalar tail of a row)
        assert (grad - results[0][2]).abs().max() <= 1e-6 * scale


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("bad", [5, 254, -1])
def test_labels_out_of_range_raise(bad, implementation):
    logits, labels = make_case(6, c=5)
    labels[1, 3, 4] = bad
    with pytest.raises(ValueError, match=rf"label values \[{bad}\] are outside 0\.\.4 and {IGNORE_INDEX}"):
        FocalDiceLoss(implementation=implementation)(logits, labels)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_label_batch_mismatch_raises(implementation):
    logits, labels = make_case(7)
    with pytest.raises(ValueError, match=r"labels must be \(B, H, W\) with B=3"):
        FocalDiceLoss(implementation=implementation)(logits, labels[:2])


def test_num_masks_without_process_group():
    assert not dist.is_initialized()
    assert global_num_masks(torch.tensor(7)) == 7.0
    assert global_num_masks(torch.tensor(0)) == 1.0


# ----------------------------------------------------------------------------- DDP


def _ddp_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    # imported here so that the child's work is self-contained
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from tiny_model import TINY_ARCH
    from torch.nn.parallel import DistributedDataParallel

    from zegclip import CLIPConfig, ZegCLIP, ZegCLIPConfig

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        res: dict = {
            "mean": global_num_masks(torch.tensor([3, 6][rank])),
            "clamped": global_num_masks(torch.tensor([0, 1][rank])),
            "zero": global_num_masks(torch.tensor(0)),
        }
        # the loss divides by the mean over ranks: rank 0 has 2 present pairs, rank 1 has 4
        logits = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(rank))
        labels = torch.full((2, 8, 8), IGNORE_INDEX)
        labels[0, :4] = 0
        if rank == 0:
            labels[0, 4:6] = 1
        else:
            labels[0, 4:], labels[1, :2], labels[1, 4:] = 2, 3, 1
        out = FocalDiceLoss()(logits, labels)
        res["loss_num_masks"] = out.num_masks
        res["loss_mask"], res["loss_dice"] = out.loss_mask.item(), out.loss_dice.item()
        res["logits"], res["labels"] = logits, labels

        # a training step under DDP without find_unused_parameters, twice
        torch.manual_seed(0)
        config = ZegCLIPConfig(
            clip=CLIPConfig(arch=TINY_ARCH), image_size=64, prompt_tokens=3, decoder_heads=4
        )
        model = ZegCLIP(config).train()
        ddp = DistributedDataParallel(model)
        text = model.class_embeddings(["a", "b", "c"])
        gen = torch.Generator().manual_seed(100 + rank)
        for _ in range(2):
            model.zero_grad()
            step = ddp(torch.randn(2, 3, 64, 64, generator=gen), text)
            FocalDiceLoss()(step.pred_masks, torch.randint(0, 3, (2, 64, 64), generator=gen)).total.backward()
        res["grads"] = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        torch.save(res, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_global_num_masks_and_ddp_step_with_two_processes(tmp_path):
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    for res in ranks:
        assert res["mean"] == 4.5
        assert res["clamped"] == 1.0  # mean 0.5, clamped to 1
        assert res["zero"] == 1.0
        assert res["loss_num_masks"] == 3.0  # (2 + 4) / 2
        # the same loss in one process, rescaled from its local num_masks to the global one
        local = FocalDiceLoss()(res["logits"], res["labels"])
        assert abs(local.loss_mask.item() * local.num_masks / 3.0 - res["loss_mask"]) < 1e-5
        assert abs(local.loss_dice.item() * local.num_masks / 3.0 - res["loss_dice"]) < 1e-6
    assert ranks[0]["grads"].keys() == ranks[1]["grads"].keys() and ranks[0]["grads"]
    for name, grad in ranks[0]["grads"].items():  # DDP averaged the gradients of both ranks
        assert torch.allclose(grad, ranks[1]["grads"][name]), name


# ----------------------------------------------------------------------------- grid logits


@pytest.mark.parametrize(
    ("grid", "size", "chunk"),
    [((8, 8), (40, 40), 1 << 22), ((5, 7), (36, 50), 3 * 36 * 50), ((8, 8), (40, 40), 1)],
)
def test_grid_logits_equal_upsampling_first(grid, size, chunk):
    """Grid logits are upsampled inside the loss, chunk by chunk: the losses and gradients of
    upsampling the whole tensor first (to float32 rounding), the same accuracy."""
    logits = torch.randn(3, 5, *grid, generator=torch.Generator().manual_seed(1)) * 3
    labels = torch.randint(0, 5, (3, *size), generator=torch.Generator().manual_seed(2))
    labels[:, ::3] = IGNORE_INDEX
    on_grid = logits.clone().requires_grad_(True)
    first = logits.clone().requires_grad_(True)
    a = FocalDiceLoss(chunk_elements=chunk)(on_grid, labels)
    b = FocalDiceLoss(chunk_elements=chunk)(
        F.interpolate(first, size=size, mode="bilinear", align_corners=False), labels
    )
    a.total.backward()
    b.total.backward()
    assert (
        abs(a.loss_mask - b.loss_mask) <= 1e-6 * b.loss_mask
        and abs(a.loss_dice - b.loss_dice) <= 1e-6 * b.loss_dice
    )
    assert torch.equal(a.accuracy, b.accuracy) and a.num_masks == b.num_masks
    assert (on_grid.grad - first.grad).abs().max() <= 1e-6 * first.grad.abs().max()


@pytest.mark.parametrize("implementation", [None, "fused", "plain"])
def test_grid_logits_never_hold_full_size_tensors_for_backward(implementation):
    """The fused path (the default) saves nothing full-size for the backward pass; the plain
    definition saves the upsampled logits and one-hot targets ``(B, C, H, W)``."""
    logits = torch.randn(2, 6, 8, 8, requires_grad=True)
    labels = torch.randint(0, 6, (2, 64, 64))
    saved = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(t.numel())
        return t

    kwargs = {} if implementation is None else {"implementation": implementation}
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = FocalDiceLoss(**kwargs)(logits, labels)
    out.total.backward()
    full_size = 2 * 6 * 64 * 64
    if implementation == "plain":
        assert max(saved) == full_size
    else:  # the largest: labelled pixels' indices, not 2 x 6 x 64 x 64 logits
        assert saved and max(saved) <= 2 * 64 * 64
    assert logits.grad.shape == logits.shape


def test_bf16_grid_logits_are_upsampled_and_computed_in_fp32():
    logits = (torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(3)) * 3).bfloat16()
    labels = torch.randint(0, 4, (2, 32, 32), generator=torch.Generator().manual_seed(4))
    low = logits.clone().requires_grad_(True)
    upcast = logits.float().requires_grad_(True)
    a, b = FocalDiceLoss()(low, labels), FocalDiceLoss()(upcast, labels)
    assert a.total.dtype == torch.float32
    assert torch.equal(a.loss_mask, b.loss_mask) and torch.equal(a.loss_dice, b.loss_dice)
    a.total.backward()
    b.total.backward()
    assert low.grad.dtype == torch.bfloat16
    assert (low.grad.float() - upcast.grad).abs().max() <= 2**-7 * upcast.grad.abs().max()


@pytest.mark.parametrize("logit_size", [8, 32])
def test_autocast_does_not_change_the_loss(logit_size):
    """Inside bf16 autocast (bf16-mixed training) the loss and its gradient are the fp32 ones."""
    logits = torch.randn(2, 6, logit_size, logit_size, generator=torch.Generator().manual_seed(5)) * 3
    labels = torch.randint(0, 6, (2, 32, 32), generator=torch.Generator().manual_seed(6))
    results = []
    for enabled in (False, True):
        x = logits.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled):
            out = FocalDiceLoss()(x, labels)
            out.total.backward()  # backward inside autocast too
        results.append((out.loss_mask, out.loss_dice, x.grad))
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])
    assert torch.equal(results[0][2], results[1][2])
