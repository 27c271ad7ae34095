"""Pretrain the tiny shapes CLIP contrastively on the shapes world, then test it zero-shot.

Run ``python tools/pretrain_shapes_clip.py --steps 3000 --seed 0 --out zegclip/assets/shapes_clip.pt``
(a one-off tool: the bundled weights came from it; see their manifest ``zegclip/assets/shapes_clip.json``).

Images come from the world of all 4 colours x 8 shapes (:data:`~zegclip.data.shapes.ALL_COLOUR_SHAPES`),
generated on the fly (a fresh batch every step). Every caption names every object, the classes
a segmentation benchmark later treats as unseen included, as real CLIP saw every word:
``"a photo of a red circle, a blue star and a green heart."``; a quarter of the captions name
shapes only, one of four templates is drawn per caption, and images are flipped at random.
Images are normalised with the ImageNet statistics the segmentation pipeline uses.

Recipe (from the feasibility study): batch 128, AdamW lr 1e-3, betas (0.9, 0.98), weight decay
0.1 except on embeddings, gains and biases, 100 linear warm-up steps, cosine decay to 0, logit
scale clamped to ln 100. One change: captions that are token-for-token identical within a batch
are all treated as positives (soft targets) instead of as each other's negatives.

At the end the model is evaluated zero-shot on freshly generated single-object images (a world
seed never used in training) and saved compactly with
:func:`zegclip.model.clip.save_compact_clip`, keeping only the token-embedding rows that the
world's captions and class prompts can use; a JSON manifest records command, seed, steps,
time and accuracies. The file is read back and compared with the in-memory model.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from open_clip.model import CLIP
from open_clip.tokenizer import SimpleTokenizer

from zegclip.common.values import json_number
from zegclip.data.shapes import (
    ALL_COLOUR_SHAPES,
    COMPOSITIONAL,
    SHAPES,
    SHAPES_ONLY,
    VOCABULARIES,
    ShapeObject,
    ShapesWorld,
)
from zegclip.model.clip import ASSETS_DIR, CLIPConfig, create_clip, save_compact_clip
from zegclip.model.preprocess import normalize as normalize_image
from zegclip.model.text import MULTI_TEMPLATES, SINGLE_TEMPLATE

ARCH_PATH = ASSETS_DIR / "shapes_clip_arch.json"
DEFAULT_OUT = ASSETS_DIR / "shapes_clip.pt"
CONTEXT_LENGTH = 24
QUICK_GELU = True  # CLIPConfig's default, so create_clip(CLIPConfig(weights="zegclip:shapes_clip")) matches
EVAL_SEED_OFFSET = 1_000_003  # evaluation worlds use seed + this: never seen in training

CAPTION_TEMPLATES: tuple[str, ...] = (
    "a photo of {}.",
    "a picture of {}.",
    "there is {} in the scene.",
    "{}.",
)
SHAPE_ONLY_PROB = 0.25
ZERO_SHOT_TEMPLATE = "a photo of a {}."
# The prompt templates ZegCLIP uses (VOC: one; COCO-Stuff / Context: the 15 ImageNet-style ones).
ZEGCLIP_TEMPLATES: tuple[str, ...] = SINGLE_TEMPLATE + MULTI_TEMPLATES


def load_arch(path: str | Path = ARCH_PATH) -> dict[str, Any]:
    """The tiny CLIP's open_clip architecture dict."""
    return json.loads(Path(path).read_text())


def get_tokenizer(context_length: int = CONTEXT_LENGTH) -> SimpleTokenizer:
    """open_clip's BPE tokenizer (shipped with the wheel, no network) at the tiny context length."""
    return SimpleTokenizer(context_length=context_length)


# -- captions -----------------------------------------------------------------------------------
def describe(objects: Sequence[ShapeObject], shape_only: bool) -> str:
    """``"a red circle, a blue star and a green heart"`` (or shapes only)."""
    parts = [f"a {o.shape}" if shape_only else f"a {o.colour} {o.shape}" for o in objects]
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def make_caption(objects: Sequence[ShapeObject], rng: np.random.Generator) -> str:
    """A caption naming every object, in random order, with a random template."""
    order = rng.permutation(len(objects))
    shape_only = bool(rng.random() < SHAPE_ONLY_PROB)
    template = CAPTION_TEMPLATES[int(rng.integers(len(CAPTION_TEMPLATES)))]
    return template.format(describe([objects[i] for i in order], shape_only))


def world_texts() -> list[str]:
    """Every text whose tokens the shapes world's users may need (captions and class prompts)."""
    names = sorted(
        {n for v in VOCABULARIES.values() for n in v.class_names} | set(SHAPES) | {f"{s}s" for s in SHAPES}
    )
    texts = [t.format(f"a {n}, a {n} and a {n}") for t in CAPTION_TEMPLATES for n in names]
    texts += [t.format(n) for t in ZEGCLIP_TEMPLATES for n in names]
    texts += [ZERO_SHOT_TEMPLATE.format(n) for n in names]
    return texts


def world_token_ids(tokenizer: SimpleTokenizer, context_length: int = CONTEXT_LENGTH) -> list[int]:
    """Ids of every token in :func:`world_texts` (SOT, EOT and padding 0 included)."""
    ids: set[int] = {0, tokenizer.sot_token_id, tokenizer.eot_token_id}
    for text in world_texts():
        ids.update(tokenizer.encode(text))  # untruncated: longer texts only cut tokens away
        ids.update(int(i) for i in tokenizer([text], context_length=context_length)[0])
    return sorted(ids)


# -- data ---------------------------------------------------------------------------------------
def make_batch(
    world: ShapesWorld, start: int, batch_size: int, rng: np.random.Generator, flip: bool = True
) -> tuple[torch.Tensor, list[str]]:
    """Images ``start .. start+batch_size-1`` of ``world`` (normalised, maybe flipped) and captions."""
    images, captions = [], []
    for index in range(start, start + batch_size):
        scene = world.render(index)
        image = scene.image[:, ::-1] if flip and rng.random() < 0.5 else scene.image
        images.append(normalize_image(image))
        captions.append(make_caption(scene.objects, rng))
    return torch.stack(images), captions


# -- optimisation -------------------------------------------------------------------------------
def param_groups(model: CLIP, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on weight matrices only: not on embeddings, gains, biases, logit scale."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_embedding = "embedding" in name  # token/positional/class embeddings
        (no_decay if p.ndim < 2 or is_embedding else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_factor(step: int, total: int, warmup: int, progress: float | None = None) -> float:
    """Linear warm-up to 1 over ``warmup`` steps, then cosine decay to 0 at ``total``.

    ``progress`` (0-1 after the warm-up), when given, replaces ``(step - warmup) / (total - warmup)``
    (used by the wall-time budget).
    """
    if step < warmup:
        return (step + 1) / warmup
    if progress is None:
        progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def contrastive_loss(
    image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor, tokens: torch.Tensor
) -> torch.Tensor:
    """Symmetric CLIP loss; identical captions in the batch are all positives (soft targets)."""
    logits = logit_scale * image_features @ text_features.t()
    same = (tokens[:, None, :] == tokens[None, :, :]).all(-1).float()
    targets = same / same.sum(1, keepdim=True)
    loss_i = torch.sum(-targets * F.log_softmax(logits, dim=1), dim=1).mean()
    loss_t = torch.sum(-targets * F.log_softmax(logits.t(), dim=1), dim=1).mean()
    return 0.5 * (loss_i + loss_t)


# -- evaluation ---------------------------------------------------------------------------------
@torch.no_grad()
def class_text_features(
    model: CLIP, tokenizer: SimpleTokenizer, class_names: Sequence[str], template: str = ZERO_SHOT_TEMPLATE
) -> torch.Tensor:
    """L2-normalised text embeddings (C, D) of ``template.format(name)`` for every class."""
    tokens = tokenizer([template.format(n) for n in class_names])
    return F.normalize(model.encode_text(tokens), dim=-1)


@torch.no_grad()
def zero_shot_predictions(
    model: CLIP,
    tokenizer: SimpleTokenizer,
    world: ShapesWorld,
    n_images: int,
    start: int = 0,
    batch_size: int = 128,
    template: str = ZERO_SHOT_TEMPLATE,
) -> tuple[np.ndarray, np.ndarray]:
    """(targets, predictions) of zero-shot classification of each image's first object.

    Use a single-object world (``max_objects=1``) for plain classification.
    """
    was_training = model.training
    model.eval()
    text = class_text_features(model, tokenizer, world.vocabulary.class_names, template)
    targets, preds = [], []
    for s in range(start, start + n_images, batch_size):
        idx = range(s, min(s + batch_size, start + n_images))
        scenes = [world.render(i) for i in idx]
        images = torch.stack([normalize_image(sc.image) for sc in scenes])
        feats = F.normalize(model.encode_image(images), dim=-1)
        preds.append((feats @ text.t()).argmax(1).numpy())
        targets.append(np.array([sc.objects[0].class_id for sc in scenes]))
    model.train(was_training)
    return np.concatenate(targets), np.concatenate(preds)


def zero_shot_accuracy(
    model: CLIP,
    tokenizer: SimpleTokenizer,
    world: ShapesWorld,
    n_images: int,
    start: int = 0,
    batch_size: int = 128,
    template: str = ZERO_SHOT_TEMPLATE,
) -> dict[str, float]:
    """Zero-shot accuracy (%) over all of ``world``'s classes, and on its seen / unseen classes.

    Returns ``{"accuracy", "seen", "unseen", "colour", "shape", "chance"}`` ("seen"/"unseen":
    accuracy on images whose object belongs to a seen / unseen class, NaN if none; "colour" /
    "shape": how often the predicted class has the right colour / shape; "colour" is NaN for a
    vocabulary of shape names).
    """
    vocab = world.vocabulary
    targets, preds = zero_shot_predictions(model, tokenizer, world, n_images, start, batch_size, template)
    correct = targets == preds
    unseen = np.isin(targets, list(vocab.unseen))

    def mean(x: np.ndarray) -> float:
        return float(100.0 * x.mean()) if x.size else float("nan")

    has_colour = all(c.colour is not None for c in vocab.classes)
    colour_ok = np.array([vocab.classes[t].colour == vocab.classes[p].colour for t, p in zip(targets, preds)])
    shape_ok = np.array([vocab.classes[t].shape == vocab.classes[p].shape for t, p in zip(targets, preds)])
    return {
        "accuracy": mean(correct),
        "seen": mean(correct[~unseen]),
        "unseen": mean(correct[unseen]),
        "colour": mean(colour_ok) if has_colour else float("nan"),
        "shape": mean(shape_ok),
        "chance": 100.0 / vocab.num_classes,
    }


def evaluate(
    model: CLIP, tokenizer: SimpleTokenizer, seed: int, n_images: int
) -> dict[str, dict[str, float]]:
    """Zero-shot accuracies on single-object images of each vocabulary's world (unseen seeds)."""
    out = {}
    for vocab in (ALL_COLOUR_SHAPES, COMPOSITIONAL, SHAPES_ONLY):
        world = ShapesWorld(vocab, 64, seed + EVAL_SEED_OFFSET, max_objects=1)
        out[vocab.name] = zero_shot_accuracy(model, tokenizer, world, n_images)
    return out


def format_accuracies(acc: dict[str, dict[str, float]]) -> str:
    a, c, s = acc["all"], acc["compositional"], acc["shapes"]
    return (
        f"32-way {a['accuracy']:.1f}% (colour {a['colour']:.1f}, shape {a['shape']:.1f}) | "
        f"task A 16-way {c['accuracy']:.1f}% (unseen {c['unseen']:.1f}) | "
        f"task B 8-way {s['accuracy']:.1f}% (unseen {s['unseen']:.1f})"
    )


# -- saving -------------------------------------------------------------------------------------
@torch.no_grad()
def reload_max_diff(model: CLIP, path: Path, tokenizer: SimpleTokenizer, seed: int = 0) -> float:
    """Largest |difference| of encode_image / encode_text between ``model`` and the file at ``path``."""
    loaded = create_clip(CLIPConfig(weights=str(path), quick_gelu=QUICK_GELU))
    model = model.eval()
    world = ShapesWorld(ALL_COLOUR_SHAPES, 64, seed + EVAL_SEED_OFFSET + 1)
    images = torch.stack([normalize_image(world.sample(i)[0]) for i in range(8)])
    texts = tokenizer(world_texts()[:: max(1, len(world_texts()) // 64)])
    diffs = [
        (model.encode_image(images) - loaded.encode_image(images)).abs().max(),
        (model.encode_text(texts) - loaded.encode_text(texts)).abs().max(),
    ]
    return float(max(diffs))


def _rounded(x: float) -> float | None:
    """Rounded for the manifest; NaN (no such images) becomes null (strict JSON)."""
    value = json_number(x)
    return None if value is None else round(value, 2)


def library_versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
        "numpy": np.__version__,
    }


# -- main ---------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], prog="python tools/pretrain_shapes_clip.py"
    )
    p.add_argument("--steps", type=int, default=3000, help="training steps")
    p.add_argument("--seed", type=int, default=0, help="seed of the training world, init and captions")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="compact weights file (.pt)")
    p.add_argument("--manifest", type=Path, default=None, help="manifest JSON (default: --out with .json)")
    p.add_argument("--arch", type=Path, default=ARCH_PATH, help="open_clip architecture JSON")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--warmup", type=int, default=100, help="linear warm-up steps")
    p.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="wall-time budget for training: the cosine decay follows whichever of steps and time "
        "runs out first, and training stops there (the manifest records the steps done)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--eval-every", type=int, default=500, help="quick zero-shot check every N steps (0: off)")
    p.add_argument("--eval-images", type=int, default=2000, help="single-object images per final evaluation")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    arch = load_arch(args.arch)
    if arch["text_cfg"].get("context_length", 77) != CONTEXT_LENGTH:
        raise ValueError(f"{args.arch}: text context_length must be {CONTEXT_LENGTH}")
    tokenizer = get_tokenizer(CONTEXT_LENGTH)
    model = create_clip(CLIPConfig(arch=arch, quick_gelu=QUICK_GELU)).train()
    world = ShapesWorld(ALL_COLOUR_SHAPES, int(arch["vision_cfg"]["image_size"]), args.seed)
    print(
        f"pretraining tiny CLIP: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, "
        f"{args.steps} steps x batch {args.batch_size}, {torch.get_num_threads()} threads, world {world}",
        flush=True,
    )
    t0 = time.time()
    steps_done, history = train(args, model, tokenizer, world)
    train_time = time.time() - t0

    model.eval()
    accuracies = evaluate(model, tokenizer, args.seed, args.eval_images)
    print(f"zero-shot ({args.eval_images} single-object images): {format_accuracies(accuracies)}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    token_ids = world_token_ids(tokenizer)
    extra = {"quick_gelu": QUICK_GELU, "normalisation": "imagenet", "context_length": CONTEXT_LENGTH}
    save_compact_clip(model, arch, args.out, token_ids, dtype=torch.float32, extra=extra)
    max_diff = reload_max_diff(model, args.out, tokenizer, args.seed)
    print(
        f"wrote {args.out} ({args.out.stat().st_size / 2**20:.2f} MiB, {len(token_ids)} token rows); "
        f"reload max |diff| {max_diff:.3g}"
    )
    manifest = build_manifest(
        args, argv, arch, world, steps_done, history, accuracies, len(token_ids), max_diff
    )
    manifest.update(train_wall_time_s=round(train_time, 1), total_wall_time_s=round(time.time() - t0, 1))
    manifest_path = args.manifest or args.out.with_suffix(".json")
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {manifest_path}", flush=True)
    return manifest


def train(
    args: argparse.Namespace, model: CLIP, tokenizer: SimpleTokenizer, world: ShapesWorld
) -> tuple[int, list]:
    """The contrastive training loop (warm-up + cosine, optionally over a wall-time budget).

    Returns (steps done, zero-shot history).
    """
    rng = np.random.default_rng([args.seed, 0xC1F])
    optimizer = torch.optim.AdamW(
        param_groups(model, args.weight_decay), lr=args.lr, betas=(0.9, 0.98), eps=1e-6
    )
    max_log_scale = math.log(100.0)
    t0 = time.time()
    history: list[dict[str, Any]] = []
    running = 0.0
    budget_s = None if args.max_minutes is None else 60.0 * args.max_minutes
    warm_end_s = None  # wall time at the end of the warm-up
    steps_done = 0
    for step in range(args.steps):
        progress = None
        if budget_s is not None and step >= args.warmup:
            warm_end_s = time.time() - t0 if warm_end_s is None else warm_end_s
            by_steps = (step - args.warmup) / max(1, args.steps - args.warmup)
            by_time = (time.time() - t0 - warm_end_s) / max(1e-9, budget_s - warm_end_s)
            progress = max(by_steps, by_time)
            if progress >= 1.0:
                print(f"wall-time budget of {args.max_minutes} min reached after {step} steps", flush=True)
                break
        images, captions = make_batch(world, step * args.batch_size, args.batch_size, rng)
        tokens = tokenizer(captions)
        for group in optimizer.param_groups:
            group["lr"] = args.lr * lr_factor(step, args.steps, args.warmup, progress)
        image_features, text_features, logit_scale = model(images, tokens)
        loss = contrastive_loss(image_features, text_features, logit_scale, tokens)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0.0, max_log_scale)
        running += loss.item()
        done = steps_done = step + 1
        if done % args.log_every == 0 or done == args.steps:
            n = args.log_every if done % args.log_every == 0 else done % args.log_every
            elapsed = time.time() - t0
            print(
                f"step {done}/{args.steps} loss {running / n:.4f} lr {optimizer.param_groups[0]['lr']:.2e} "
                f"scale {model.logit_scale.exp().item():.1f} {elapsed / done:.2f}s/step "
                f"elapsed {elapsed / 60:.1f} min",
                flush=True,
            )
            running = 0.0
        if args.eval_every and done % args.eval_every == 0 and done < args.steps:
            acc = evaluate(model, tokenizer, args.seed, 256)
            history.append({"step": done, **{k: round(v["accuracy"], 2) for k, v in acc.items()}})
            print(f"  zero-shot @ {done} (256 images): {format_accuracies(acc)}", flush=True)
    return steps_done, history


def build_manifest(
    args: argparse.Namespace,
    argv: Sequence[str] | None,
    arch: dict[str, Any],
    world: ShapesWorld,
    steps_done: int,
    history: list,
    accuracies: dict[str, dict[str, float]],
    token_rows: int,
    max_diff: float,
) -> dict[str, Any]:
    """What the bundled weights' manifest (``zegclip/assets/shapes_clip.json``) records."""
    return {
        "command": "python tools/pretrain_shapes_clip.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "seed": args.seed,
        "steps": steps_done,
        "max_steps": args.steps,
        "max_minutes": args.max_minutes,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "weight_decay": args.weight_decay,
        "warmup": args.warmup,
        "threads": torch.get_num_threads(),
        "world": {"vocabulary": ALL_COLOUR_SHAPES.name, "image_size": world.image_size, "seed": args.seed},
        "captions": {"templates": list(CAPTION_TEMPLATES), "shape_only_prob": SHAPE_ONLY_PROB, "flip": True},
        "arch": arch,
        "quick_gelu": QUICK_GELU,
        "normalisation": "imagenet mean/std on 0-255 RGB",
        "zero_shot": {
            "template": ZERO_SHOT_TEMPLATE,
            "images": args.eval_images,
            "eval_world_seed": args.seed + EVAL_SEED_OFFSET,
            "accuracy": {k: {m: _rounded(x) for m, x in v.items()} for k, v in accuracies.items()},
        },
        "history": history,
        "file": {"path": args.out.name, "bytes": args.out.stat().st_size, "token_rows": token_rows},
        "reload_max_abs_diff": max_diff,
        "versions": library_versions(),
    }


if __name__ == "__main__":
    main()
