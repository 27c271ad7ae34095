"""One of the processes of ``test_concurrency.py``: fills a shared text-embedding cache.

    python text_cache_worker.py CACHE_DIR GO_FILE N

Builds the tiny CLIP's text tower (torch seed 0: every process has the same weights, so the same
cache files), says it is ready (``ready-<pid>`` beside GO_FILE), waits for GO_FILE, then computes N
vocabularies. Writes go through a slow disk (half the file, a pause, the rest), so that two processes
write the same file at the same time.
"""

from __future__ import annotations

import io
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ (tiny_model)
from tiny_model import TINY_ARCH  # noqa: E402

from zegclip.model.clip import CLIPConfig, create_clip  # noqa: E402
from zegclip.model.text import TextEncoder  # noqa: E402


def vocabulary(i: int) -> list[str]:
    return [f"class {i} a", f"class {i} b", f"class {i} c"]


def encoder(cache: Path | None) -> TextEncoder:
    torch.manual_seed(0)
    return TextEncoder(create_clip(CLIPConfig(arch=TINY_ARCH)), cache_dir=cache, cache_key="tiny")


def slow_disk() -> None:
    real_save = torch.save

    def save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        buffer = io.BytesIO()
        real_save(obj, buffer)
        data = buffer.getvalue()
        handle = open(f, "wb") if isinstance(f, (str, Path)) else f  # noqa: SIM115
        handle.write(data[: len(data) // 2])
        handle.flush()
        time.sleep(0.03)
        handle.write(data[len(data) // 2 :])
        if handle is not f:
            handle.close()

    torch.save = save


if __name__ == "__main__":
    cache, go, n = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    text = encoder(cache)
    slow_disk()
    (go.parent / f"ready-{os.getpid()}").touch()
    while not go.exists():
        time.sleep(0.002)
    for i in range(n):
        text.class_embeddings(vocabulary(i))
