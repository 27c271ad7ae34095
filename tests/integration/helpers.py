"""Helpers of the integration tests: composed Hydra configs, tiny synthetic datasets, shared runs.

Style of lightning-hydra-template: the train / eval configs are composed with Hydra's compose API
(``return_hydra_config=True``, then ``HydraConfig().set_config``), every output goes to a pytest
temporary folder, and ``zegclip.engine.train.train`` / ``evaluate`` run in-process. Overrides make the
runs tiny: random-init tiny CLIP, 64-pixel crops, a handful of steps, no loader workers.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from hydra_compose import CONF_DIR, compose_config  # noqa: F401  (shared with the other test folders)

REPO_ROOT = Path(__file__).resolve().parents[2]
DATASETS = ("voc", "coco", "context", "custom")
SETTINGS = ("inductive", "fully", "transductive")
# the paper's recipes (conf/experiment/<dataset>_<setting>.yaml): prompt tokens, templates, iterations
PAPER = {
    "voc": {
        "prompt_tokens": 10,
        "templates": "single",
        "max_steps": {"inductive": 20000, "fully": 20000, "transductive": 10000},
    },
    "coco": {
        "prompt_tokens": 100,
        "templates": "multi",
        "max_steps": {"inductive": 80000, "fully": 80000, "transductive": 40000},
    },
    "context": {
        "prompt_tokens": 35,
        "templates": "multi",
        "max_steps": {"inductive": 40000, "fully": 40000, "transductive": 20000},
    },
    # not in the paper: the VOC recipe as a starting point for your own data
    "custom": {
        "prompt_tokens": 10,
        "templates": "single",
        "max_steps": {"inductive": 20000, "fully": 20000, "transductive": 10000},
    },
}
SUMMARY_KEYS = ("mIoU_seen", "mIoU_unseen", "hIoU", "mIoU", "pAcc", "mAcc", "fwIoU", "mIoU_gt")


def _load_data_builders() -> ModuleType:
    """tests/data/conftest.py (the synthetic datasets in the real layouts) under a private name.

    ``tests`` and ``tests/data`` are not packages (their test modules ``from conftest import``),
    so the builders are loaded from their file rather than imported as ``tests.data.conftest``.
    """
    name = "_zegclip_synthetic_datasets"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "tests" / "data" / "conftest.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


synthetic = _load_data_builders()

# Tiny, CPU-only, quick runs. Dataset-specific extras are in DATASET_OVERRIDES.
TINY_OVERRIDES = [
    "model=tiny",
    "trainer=cpu",
    "dataset.crop_size=64",
    "dataset.scale=[128,64]",
    "dataset.test_short_side=64",
    "dataset.batch_size=2",
    "dataset.num_workers=0",
    "dataset.persistent_workers=false",
    "dataset.pin_memory=false",
    "optimizer.warmup_steps=2",
    "trainer.max_steps=2",
    "trainer.val_check_interval=2",
    "trainer.num_sanity_val_steps=0",
    "trainer.log_every_n_steps=1",
]
# the custom layout: 3 classes (cat, dog, bird); "bird" unseen so that every setting applies
DATASET_OVERRIDES = {"custom": ["dataset.unseen=[2]"]}


def make_all_datasets(root: Path) -> Path:
    """VOC, COCO-Stuff, Context and custom trees side by side under one ``paths.data_dir``."""
    synthetic.make_voc(root)
    synthetic.make_coco(root)
    synthetic.make_context(root)
    synthetic.make_custom(root / "custom")
    return root


def train_overrides(dataset: str, setting: str, data_dir: Path, *extra: str) -> list[str]:
    return [
        f"dataset={dataset}",
        f"setting={setting}",
        f"experiment={dataset}_{setting}",
        f"paths.data_dir={data_dir}",
        *TINY_OVERRIDES,
        *DATASET_OVERRIDES.get(dataset, []),
        *extra,
    ]


def eval_overrides(dataset: str, ckpt: Path | str, data_dir: Path, *extra: str) -> list[str]:
    return [
        f"dataset={dataset}",
        f"ckpt_path={ckpt}",
        f"paths.data_dir={data_dir}",
        "trainer=cpu",
        "dataset.test_short_side=64",
        "dataset.num_workers=0",
        "dataset.persistent_workers=false",
        "dataset.pin_memory=false",
        *DATASET_OVERRIDES.get(dataset, []),
        *extra,
    ]


class RunCache:
    """Tiny training runs shared by the whole session (one per dataset x setting x overrides)."""

    def __init__(self, root: Path, data_dir: Path) -> None:
        self.root = root
        self.data_dir = data_dir
        self.runs: dict[tuple[str, ...], dict[str, Any]] = {}

    def get(self, dataset: str, setting: str, *extra: str) -> dict[str, Any]:
        """``{"dir": run folder, "summary": test metrics returned by train}``; trains on first use."""
        key = (dataset, setting, *extra)
        if key not in self.runs:
            from zegclip.engine.train import train

            if setting == "transductive" and not any(e.startswith("init_from=") for e in extra):
                extra = (*extra, f"init_from={self.last_ckpt(dataset, 'inductive')}")
            out = self.root / f"{dataset}_{setting}_{len(self.runs)}"
            cfg = compose_config("train", train_overrides(dataset, setting, self.data_dir, *extra), out)
            with one_torch_thread():
                summary = train(cfg)
            self.runs[key] = {"dir": out, "summary": summary, "cfg": cfg}
        return self.runs[key]

    def last_ckpt(self, dataset: str, setting: str = "inductive") -> Path:
        return self.get(dataset, setting)["dir"] / "checkpoints" / "last.ckpt"


def read_metrics(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "metrics.json").read_text())


def check_metric_values(metrics: dict[str, Any], class_names: list[str]) -> None:
    """Summary values and per-class IoUs are fractions in [0, 1] or null (undefined)."""
    for key in SUMMARY_KEYS:
        value = metrics[key]
        assert value is None or (isinstance(value, float) and 0.0 <= value <= 1.0), (key, value)
    assert list(metrics["IoU_per_class"]) == list(class_names)
    for name, value in metrics["IoU_per_class"].items():
        assert value is None or 0.0 <= value <= 1.0, (name, value)
    assert any(v is not None for v in metrics["IoU_per_class"].values())


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread: on a shared, busy CPU two threads make these tiny runs ~10x slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
