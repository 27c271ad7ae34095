"""Does the data pipeline keep up? Training images per second of one data-loader worker.

    python benchmarks/data_benchmark.py [--images 48] [--passes 3] [--out FILE]

For VOC and COCO-Stuff, synthetic JPEGs of the datasets' real sizes (VOC: 500x375, 375x500,
500x333, 500x500; COCO: 640x480, 480x640, 640x427, 427x640) with PNG labels of blobs are written
in the real on-disk layouts to a temporary folder. The datamodule built from ``conf/dataset/<name>.yaml``
(the mmseg-faithful albumentations pipeline: ratio-range resize, cat-max-ratio crop to 512, flip,
photometric distortion, normalisation, padding) reads them back through its training dataset.
One process with one thread (``torch`` and OpenCV) plays one worker: per image, JPEG/PNG decoding
alone, and the whole item (decoding + transforms + tensors), as the loader's ``__getitem__``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

import benchlib

SIZES = {
    "voc": [(375, 500), (500, 375), (333, 500), (500, 500)],
    "coco": [(480, 640), (640, 480), (427, 640), (640, 427)],
}


def synthetic_image(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth colour regions plus texture: JPEG sizes and decode times like photographs'."""
    coarse = rng.integers(0, 256, (h // 32 + 2, w // 32 + 2, 3), dtype=np.uint8)
    img = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.int16)
    img += rng.normal(0, 12, (h, w, 3)).astype(np.int16)
    return np.clip(img, 0, 255).astype(np.uint8)


def synthetic_label(h: int, w: int, values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    coarse = rng.choice(values, size=(h // 40 + 1, w // 40 + 1)).astype(np.uint8)
    label = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_NEAREST)
    label[:3] = 255  # an ignored border, as in VOC
    return label


def write_dataset(name: str, root: Path, count: int) -> None:
    rng = np.random.default_rng(0)
    jpeg = [cv2.IMWRITE_JPEG_QUALITY, 90]
    ids = [f"{2008 + i // 1000}_{i:06d}" for i in range(count)]
    for k, stem in enumerate(ids):
        h, w = SIZES[name][k % len(SIZES[name])]
        image = synthetic_image(h, w, rng)
        if name == "voc":
            base = root / "VOCdevkit" / "VOC2012"
            folder = "SegmentationClass" if k % 2 == 0 else "SegmentationClassAug"
            label = synthetic_label(h, w, rng.choice(np.arange(0, 21), 4), rng)
            paths = (base / "JPEGImages" / f"{stem}.jpg", base / folder / f"{stem}.png")
        else:
            base = root / "coco_stuff164k"
            label = synthetic_label(h, w, rng.choice(np.arange(0, 171), 8), rng)
            paths = (
                base / "images" / "train2017" / f"{stem}.jpg",
                base / "annotations" / "train2017" / f"{stem}_labelTrainIds.png",
            )
        for p in paths:
            p.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(paths[0]), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), jpeg)
        cv2.imwrite(str(paths[1]), label)
    if name == "voc":
        sets = root / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation"
        sets.mkdir(parents=True, exist_ok=True)
        (sets / "train.txt").write_text("".join(f"{s}\n" for s in ids[0::2]))
        (sets / "aug.txt").write_text("".join(f"{s}\n" for s in ids[1::2]))
        (sets / "val.txt").write_text("2007_999999\n")
    else:  # val folders exist but the benchmark reads train only
        for sub in ("images", "annotations"):
            (root / "coco_stuff164k" / sub / "val2017").mkdir(parents=True, exist_ok=True)


def train_dataset(name: str, root: Path):
    """The training dataset exactly as ``SegmentationDataModule`` builds it from the config."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    import zegclip.engine.resolvers  # noqa: F401  (the configs' ${zegclip.class_names:...})

    cfg = OmegaConf.load(benchlib.ROOT / "conf" / "dataset" / f"{name}.yaml").dataset
    cfg.root, cfg.seed = str(root), 0
    return instantiate(cfg).build_split("train", train=True)


def measure(name: str, count: int, passes: int) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory() as tmp:
        write_dataset(name, Path(tmp), count)
        dataset = train_dataset(name, Path(tmp))
        assert len(dataset) == count, (name, len(dataset))
        out: dict[str, list[float]] = {"decode": [], "item": []}
        sizes = {dataset[i]["image"].shape for i in range(min(4, count))}
        for _ in range(passes):
            for i in range(count):
                start = time.perf_counter()
                dataset.load_sample(i)
                out["decode"].append(time.perf_counter() - start)
                start = time.perf_counter()
                dataset[i]
                out["item"].append(time.perf_counter() - start)
        out["shape"] = sorted(str(tuple(s)) for s in sizes)  # type: ignore[assignment]
        return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=48, help="synthetic images per dataset")
    parser.add_argument("--passes", type=int, default=3, help="passes over them (random crops differ)")
    parser.add_argument(
        "--out", default=None, help="result file (default benchmarks/results/data_benchmark.md)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    command = "python benchmarks/" + " ".join(
        [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]
    )
    lines = [benchlib.header(command, "One worker = one process, 1 torch thread, 1 OpenCV thread.")]
    lines += [
        "| dataset | image sizes | decode (JPEG + PNG), median | whole item, median (mean) "
        "| images/s per worker |",
        "|---|---|---|---|---|",
    ]
    for name in ("voc", "coco"):
        r = measure(name, args.images, args.passes)
        item = statistics.median(r["item"])
        mean = statistics.mean(r["item"])
        sizes = ", ".join(f"{h}x{w}" for h, w in SIZES[name])
        lines.append(
            f"| {name} | {sizes} (HxW) | {statistics.median(r['decode']) * 1000:.1f} ms | {item * 1000:.1f} "
            f"ms ({mean * 1000:.1f} ms) | {1 / mean:.1f} |"
        )
    lines += ["", f"Load average at the end: {benchlib.load_average()}."]
    benchlib.write_result("data_benchmark", "\n".join(lines) + "\n", args.out)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    sys.exit(main())
