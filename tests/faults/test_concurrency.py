"""Concurrent writers: two processes (two DDP ranks, two runs on one machine) fill the same
text-embedding cache at once; every file ends complete and right, and no reader sees half of one."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import torch
from scenarios import REPO_ROOT, environment
from text_cache_worker import encoder, vocabulary

WORKER = Path(__file__).resolve().parent / "text_cache_worker.py"
N = 12


def test_two_processes_filling_one_text_cache_at_once(tmp_path: Path) -> None:
    cache, go = tmp_path / "cache", tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(cache), str(go), str(N)],
            cwd=REPO_ROOT,
            env=environment(),
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    expected = {tuple(vocabulary(i)): encoder(None).class_embeddings(vocabulary(i)) for i in range(N)}
    deadline = time.time() + 120
    while (
        len(list(tmp_path.glob("ready-*"))) < 2
        and all(p.poll() is None for p in procs)
        and time.time() < deadline
    ):
        time.sleep(0.01)
    go.touch()  # both are ready: they start together
    torn: list[str] = []
    while any(p.poll() is None for p in procs) and time.time() < deadline:  # a reader, while they write
        for file in cache.glob("text_*.pt"):
            try:
                value = torch.load(file, weights_only=True)
                assert value.shape[0] == 3
            except Exception as err:  # noqa: BLE001
                torn.append(f"{file.name}: {type(err).__name__}: {err}")
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(e[-2000:] for e in errors)
    assert torn == []
    files = sorted(cache.glob("*"))
    assert len(files) == N and all(f.name.startswith("text_") and f.suffix == ".pt" for f in files), files
    cached = encoder(cache)  # reads every vocabulary back from the files the two processes wrote
    for names, value in expected.items():
        assert torch.equal(cached.class_embeddings(list(names)), value)
    assert len(list(cache.glob("*"))) == N  # nothing recomputed, nothing left behind
