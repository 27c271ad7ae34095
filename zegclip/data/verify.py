"""Read every sample of a split once, before a run depends on it, and remember what passed.

A bad validation file (unreadable image, unknown label value, size mismatch) would otherwise be
found at the first validation, thousands of steps into training. :func:`verify_samples` reads
every listed image and label (in threads), collects every problem and raises one
:class:`~zegclip.data.errors.DataError` naming all of them. Files that passed are remembered in a
cache keyed by their path, size and modification time (and by the label decoding), so later runs
only stat them: seconds instead of minutes.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from torch.utils.data import Dataset, Subset

from zegclip.common.atomic import write_text
from zegclip.common.errors import ImageReadError, WriteError
from zegclip.data.errors import DataError


def cache_dir() -> Path:
    """``$ZEGCLIP_CACHE_DIR`` or ``~/.cache/zegclip``."""
    return Path(os.environ.get("ZEGCLIP_CACHE_DIR") or Path.home() / ".cache" / "zegclip")


def _fingerprint(*paths: Path) -> list[int]:
    out = []
    for p in paths:
        st = p.stat()
        out += [st.st_size, st.st_mtime_ns]
    return out


def _indices(dataset: Dataset) -> tuple[Dataset, list[int]]:
    """The base dataset and the indices of it that ``dataset`` uses (a ``Subset`` keeps a few)."""
    if isinstance(dataset, Subset):
        base, inner = _indices(dataset.dataset)
        return base, [inner[i] for i in dataset.indices]
    return dataset, list(range(len(dataset)))  # type: ignore[arg-type]


def verify_samples(dataset: Dataset, what: str, workers: int = 4, use_cache: bool = True) -> int:
    """Read every file ``dataset`` lists; raise listing every problem. Returns the number read.

    Datasets without files on disk (no ``samples``, e.g. the generated shapes world) pass at once.
    """
    base, indices = _indices(dataset)
    samples = getattr(base, "samples", None)
    if not samples or len(samples) != len(base) or not hasattr(base, "load_sample"):  # type: ignore[arg-type]
        return 0  # generated data (the shapes world): nothing on disk
    key = hashlib.sha1(
        json.dumps(
            [
                what,
                str(samples[0].image_path.parent) if samples else "",
                getattr(base, "num_classes", None),
                getattr(base, "reduce_zero_label", None),
            ]
        ).encode()
    ).hexdigest()[:16]
    cache_file = cache_dir() / "verified" / f"{key}.json"
    known: dict[str, list[int]] = {}
    if use_cache and cache_file.is_file():
        try:
            known = json.loads(cache_file.read_text())
        except (OSError, ValueError):
            known = {}

    def check(i: int) -> tuple[str, list[int] | None, str | None]:
        s = samples[i]
        name = str(s.image_path)
        try:
            stamp = _fingerprint(s.image_path, s.label_path)
        except OSError as err:
            return name, None, f"{name}: {err.strerror or err}"
        if known.get(name) == stamp:
            return name, stamp, None
        try:
            base.load_sample(i)  # type: ignore[attr-defined]
        except (DataError, ImageReadError) as err:
            return name, None, str(err)
        return name, stamp, None

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(check, indices))
    problems = [p for _, _, p in results if p]
    passed = {n: stamp for n, stamp, p in results if stamp is not None and p is None}
    if use_cache and passed:
        try:
            write_text(cache_file, json.dumps({**known, **passed}), what="data-check cache")
        except WriteError as err:  # a read-only or full cache only costs time: say so, go on
            print(
                f"(not cached: {err}; set ZEGCLIP_CACHE_DIR to a writable folder)",
                file=sys.stderr,
                flush=True,
            )
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise DataError(f"{len(problems)} of {len(indices)} {what} samples cannot be used:\n  {shown}{more}")
    return len(indices)
