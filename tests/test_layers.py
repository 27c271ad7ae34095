"""The layers import one way (docs/architecture.md): the model knows no Lightning, Hydra, data or
runner; the data layer knows no model; the Lightning layer knows no Hydra runner."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "zegclip"
SHARED = ("zegclip.constants", "zegclip.values", "zegclip.errors", "zegclip.atomic", "zegclip.visualize")
LIGHTNING = ("zegclip.module", "zegclip.optim", "zegclip.metrics", "zegclip.checkpointing", "zegclip.resume",
             "zegclip.interrupts", "zegclip.console", "zegclip.plots")  # fmt: skip


def imports(path: Path) -> set[str]:
    """Every module a file imports (at any depth: lazy imports count too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def files(*parts: str) -> list[Path]:
    return sorted(PACKAGE.joinpath(*parts).glob("*.py"))


def allowed(module: str, prefixes: tuple[str, ...]) -> bool:
    return not module.startswith("zegclip") or module == "zegclip" or module.startswith(prefixes)


@pytest.mark.parametrize("path", files("model"), ids=lambda p: p.name)
def test_the_model_knows_no_lightning_hydra_data_or_runner(path: Path) -> None:
    bad = {m for m in imports(path) if m.startswith(("lightning", "hydra", "omegaconf", "pytorch_lightning"))}
    bad |= {m for m in imports(path) if not allowed(m, ("zegclip.model", *SHARED))}
    assert not bad, f"{path.name} imports {sorted(bad)}"


@pytest.mark.parametrize("path", files("data"), ids=lambda p: p.name)
def test_the_data_layer_knows_no_model(path: Path) -> None:
    bad = {m for m in imports(path) if not allowed(m, ("zegclip.data", *SHARED))}
    assert not bad, f"{path.name} imports {sorted(bad)}"


@pytest.mark.parametrize("name", LIGHTNING)
def test_the_lightning_layer_knows_no_runner_or_hydra(name: str) -> None:
    path = PACKAGE / f"{name.split('.')[-1]}.py"
    bad = {m for m in imports(path) if m.startswith("hydra") or not allowed(m, ("zegclip.model", *SHARED, *LIGHTNING))}
    assert not bad, f"{path.name} imports {sorted(bad)}"


@pytest.mark.parametrize("name", SHARED)
def test_shared_modules_import_nothing_above(name: str) -> None:
    path = PACKAGE / f"{name.split('.')[-1]}.py"
    bad = {m for m in imports(path) if not allowed(m, SHARED)}
    assert not bad, f"{path.name} imports {sorted(bad)}"
