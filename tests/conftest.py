"""Shared fixtures. Only the golden tests read ../shared/golden (CI always has it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from environment import unavailable
from tiny_model import TINY_ARCH

os.environ.setdefault("WANDB_MODE", "disabled")

if os.environ.get("PYTEST_XDIST_WORKER"):  # pytest-xdist: each worker its share of the cores
    _workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // _workers))

REPO_ROOT = Path(__file__).resolve().parents[1]
GOLDEN_DIR = Path(os.environ.get("ZEGCLIP_GOLDEN_DIR", REPO_ROOT.parent / "shared" / "golden"))


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    if not (GOLDEN_DIR / "official_tiny.pth").is_file():
        unavailable(
            f"the golden pack (official implementation's tensors) at {GOLDEN_DIR}",
            "it ships beside the repository in CI as ../shared/golden; set "
            "ZEGCLIP_GOLDEN_DIR to point at a copy",
        )
    return GOLDEN_DIR


@pytest.fixture(scope="session")
def golden(golden_dir: Path) -> dict[str, dict]:
    """The golden pack, its label maps translated to our ignore value (the official 255 ->
    ``IGNORE_INDEX``; every other value as stored)."""
    from zegclip.common.constants import IGNORE_INDEX

    names = [
        "inputs",
        "text_embeddings",
        "train_outputs",
        "eval_outputs",
        "transductive_outputs",
        "fully_outputs",
    ]
    pack = {n: torch.load(golden_dir / f"{n}.pt", weights_only=True) for n in names}
    for part, key in GOLDEN_LABEL_MAPS:
        labels = pack[part][key]
        assert not (labels == IGNORE_INDEX).any()  # the translation is one-to-one
        pack[part][key] = torch.where(labels == OFFICIAL_IGNORE, IGNORE_INDEX, labels)
    return pack


OFFICIAL_IGNORE = 255
GOLDEN_LABEL_MAPS = [
    ("inputs", "gt_semantic_seg"),
    ("inputs", "gt_seen_mapped"),
    ("inputs", "gt_edge_case"),
    ("transductive_outputs", "gt_mapped_before_pseudo"),
    ("transductive_outputs", "targets"),
    ("fully_outputs", "targets"),
]


def _tiny_config():
    from zegclip.model import CLIPConfig, ZegCLIPConfig

    return ZegCLIPConfig(clip=CLIPConfig(arch=TINY_ARCH), image_size=64, prompt_tokens=3, decoder_heads=4)


@pytest.fixture()
def tiny_config():
    return _tiny_config()


@pytest.fixture(scope="module")
def tiny_eval_model():
    """A tiny random ZegCLIP (torch seed 0) in eval mode, shared by a test module."""
    from zegclip.model import ZegCLIP

    torch.manual_seed(0)
    return ZegCLIP(_tiny_config()).eval()
