"""Sweep report, reading: the jobs of multirun folders or run folders, grouped by their overrides."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from zegclip.engine.report.failures import failure_reason

NON_VARIABLE = ("seed", "hydra", "paths", "logger")
"""Override keys (and their sub-keys) that never tell groups apart: seeds, Hydra, paths, loggers."""
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


@dataclass
class Job:
    """One run folder: its overrides and, when it finished, its metrics."""

    folder: Path
    overrides: list[str]
    metrics: dict[str, Any] | None = None
    seed: int | None = None
    reason: str | None = None  # why there are no metrics
    name: str = ""

    def group_key(self, ignore: Sequence[str] = ()) -> tuple[str, ...]:
        return tuple(sorted(o for o in self.overrides if is_variable(o, ignore)))


@dataclass
class MissingJob:
    """A job the sweep defines but that left no folder."""

    name: str
    overrides: list[str]
    reason: str


@dataclass
class Group:
    key: tuple[str, ...]
    jobs: list[Job] = field(default_factory=list)

    @property
    def finished(self) -> list[Job]:
        return [j for j in self.jobs if j.metrics is not None]


@dataclass
class Report:
    sources: list[Path]
    groups: list[Group]
    missing: list[MissingJob]
    class_names: list[str]
    expected: int | None  # jobs the sweep definitions imply (None: unknown)
    ignore: list[str] = field(default_factory=list)  # extra keys left out of the grouping

    @property
    def jobs(self) -> list[Job]:
        return [j for g in self.groups for j in g.jobs]

    @property
    def failed(self) -> list[Job]:
        return [j for j in self.jobs if j.metrics is None]

    def common_overrides(self) -> list[str]:
        """Overrides shared by every group (shown once, not in each group's label)."""
        keys = [set(g.key) for g in self.groups]
        if not keys:
            return []
        shared = set.intersection(*keys)
        return [o for o in self.groups[0].key if o in shared]

    def label(self, group: Group) -> str:
        """The group's overrides that not every group shares (``(all)`` when nothing varies)."""
        common = set(self.common_overrides())
        own = [o for o in group.key if o not in common]
        return " ".join(own) if own else "(all)"

    def short(self, overrides: Sequence[str]) -> str:
        """A job's overrides without those every group shares and without hydra.* / paths.*."""
        common = set(self.common_overrides())
        kept = [
            o
            for o in overrides
            if o not in common and (is_variable(o, self.ignore) or override_key(o) == "seed")
        ]
        return " ".join(kept)


def override_key(override: str) -> str:
    """``"+a.b=1"`` -> ``"a.b"`` (prefixes ``+``, ``++``, ``~`` dropped)."""
    return override.split("=", 1)[0].lstrip("+~").strip()


def is_variable(override: str, ignore: Sequence[str] = ()) -> bool:
    """Whether an override tells groups apart: not ``seed``, ``hydra``, ``paths``, ``logger``
    (nor their sub-keys ``hydra.*``, ``hydra/*`` ...) and not in ``ignore``."""
    key = override_key(override)
    return not any(key == k or key.startswith((f"{k}.", f"{k}/")) for k in (*NON_VARIABLE, *ignore))


def is_job_folder(path: Path) -> bool:
    return (path / "metrics.json").is_file() or (path / ".hydra" / "overrides.yaml").is_file()


def _load_yaml(path: Path) -> Any:
    try:
        return OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except Exception:  # unreadable file: treated as absent
        return None


def read_job(folder: Path, name: str = "") -> Job:
    """A job from its folder: ``metrics.json``, else the reason it has none."""
    metrics = None
    reason = None
    path = folder / "metrics.json"
    if path.is_file():
        try:
            metrics = json.loads(path.read_text())
            if not isinstance(metrics, dict):
                raise ValueError("not a JSON object")
        except ValueError as err:
            metrics, reason = None, f"unreadable metrics.json ({err})"
    overrides = (metrics or {}).get("overrides")
    if overrides is None:
        overrides = _load_yaml(folder / ".hydra" / "overrides.yaml") or []
    seed = (metrics or {}).get("seed")
    if seed is None:
        for config in (folder / "config_resolved.yaml", folder / ".hydra" / "config.yaml"):
            loaded = _load_yaml(config) if config.is_file() else None
            if isinstance(loaded, dict) and isinstance(loaded.get("seed"), int):
                seed = loaded["seed"]
                break
    if metrics is None and reason is None:
        reason = failure_reason(folder)
    return Job(
        folder=folder,
        overrides=[str(o) for o in overrides],
        metrics=metrics,
        seed=seed,
        reason=reason,
        name=name or folder.name,
    )


def find_job_folders(root: Path) -> list[Path]:
    """Job folders at or under ``root`` (not descending into a job folder)."""
    if is_job_folder(root):
        return [root]
    found = []
    for child in sorted(
        (p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=_natural
    ):
        found.extend(find_job_folders(child))
    return found


def _natural(path: Path) -> tuple[Any, ...]:
    return (0, int(path.name), "") if path.name.isdigit() else (1, 0, path.name)


def expected_jobs(sweep_dir: Path) -> list[list[str]] | None:
    """Each job's overrides as Hydra's basic sweeper expands them from ``multirun.yaml``.

    None when unknown (another sweeper, or sweeps such as ``glob`` that need the config).
    """
    config = _load_yaml(sweep_dir / "multirun.yaml")
    if not isinstance(config, dict):
        return None
    hydra = config.get("hydra") or {}
    sweeper = hydra.get("sweeper") or {}
    if sweeper.get("_target_", BASIC_SWEEPER) != BASIC_SWEEPER:
        return None
    task = list((hydra.get("overrides") or {}).get("task") or [])
    params = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
    try:
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from hydra.core.override_parser.overrides_parser import OverridesParser

        parsed = OverridesParser.create().parse_overrides([*params, *task])
        batches = BasicSweeper.split_arguments(parsed, None)
    except Exception:
        return None
    return [list(job) for batch in batches for job in batch]


def collect(paths: Sequence[str | Path], ignore: Sequence[str] = ()) -> Report:
    """Jobs of every sweep or run folder in ``paths``, grouped by their overrides except ``seed``
    and the keys in :data:`NON_VARIABLE` and ``ignore`` (e.g. ``init_from``)."""
    jobs: list[Job] = []
    missing: list[MissingJob] = []
    expected_total: int | None = 0
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            raise FileNotFoundError(
                f"{str(path)!r} is not a folder (expected a multirun folder or run folders)"
            )
        sweeps = [path] if (path / "multirun.yaml").is_file() else sorted(path.rglob("multirun.yaml"))
        sweep_dirs = [s if s.is_dir() else s.parent for s in sweeps]
        folders = find_job_folders(path)
        for sweep in sweep_dirs:
            expected = expected_jobs(sweep)
            inside = [f for f in folders if sweep in f.parents]
            found = [read_job(f, str(f.relative_to(sweep))) for f in inside]
            if expected is None:
                expected_total = None
            else:
                if expected_total is not None:
                    expected_total += len(expected)
                missing.extend(_unmatched(expected, found, sweep))
            jobs.extend(found)
        rest = [f for f in folders if not any(s in f.parents for s in sweep_dirs)]
        jobs.extend(read_job(f, str(f.relative_to(path)) if f != path else f.name) for f in rest)
        if expected_total is not None:
            expected_total += len(rest)
    if not jobs and not missing:
        raise FileNotFoundError(
            f"no runs found under {[str(p) for p in paths]}: expected folders holding metrics.json "
            "or .hydra/overrides.yaml (a multirun folder logs/train/multiruns/<time>/, or run folders)"
        )
    groups: dict[tuple[str, ...], Group] = {}
    for job in jobs:
        key = job.group_key(ignore)
        groups.setdefault(key, Group(key)).jobs.append(job)
    class_names: list[str] = []
    for job in jobs:
        for name in (job.metrics or {}).get("IoU_per_class") or {}:
            if name not in class_names:
                class_names.append(name)
    return Report(
        [Path(p) for p in paths], list(groups.values()), missing, class_names, expected_total, list(ignore)
    )


def _canonical(overrides: Sequence[str]) -> list[str]:
    """Overrides as Hydra's sweeper writes them (``x=false`` -> ``x=False``), sorted."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    out = []
    for text in overrides:
        try:
            override = parser.parse_override(text)
            out.append(f"{override.get_key_element()}={override.get_value_element_as_str()}")
        except Exception:
            out.append(text)
    return sorted(out)


def _unmatched(expected: list[list[str]], found: list[Job], sweep: Path) -> list[MissingJob]:
    remaining = [_canonical(j.overrides) for j in found]
    out = []
    for number, overrides in enumerate(expected):
        key = _canonical(overrides)
        if key in remaining:
            remaining.remove(key)
        else:
            out.append(MissingJob(f"#{number}", overrides, "not started (no job folder)"))
    return out
