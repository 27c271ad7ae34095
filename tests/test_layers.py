"""The folders are the layers (docs/architecture.md), and each imports only the layers below it.

``zegclip/common`` < ``zegclip/model`` < ``zegclip/training`` < ``zegclip/engine`` < ``zegclip/apps``;
``zegclip/data`` sits beside the model (it knows ``common`` only). The rules are by folder: a new
file is checked by where it is put, with no list to keep by hand.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "zegclip"
LAYERS: dict[str, tuple[str, ...]] = {
    "common": ("common",),
    "model": ("model", "common"),
    "data": ("data", "common"),
    "training": ("training", "model", "common"),
    "engine": ("engine", "training", "data", "model", "common"),
    "apps": ("apps", "engine", "training", "data", "model", "common"),
}
"""Each layer (a folder of ``zegclip/``) and the layers it may import."""
FORBIDDEN_LIBRARIES: dict[str, tuple[str, ...]] = {
    "common": ("lightning", "pytorch_lightning", "wandb", "hydra", "matplotlib", "torch"),
    "model": ("lightning", "pytorch_lightning", "wandb", "hydra", "omegaconf"),
    "data": ("wandb", "hydra"),
    "training": ("hydra",),
}
"""Libraries a layer must not import: the model works without Lightning or Hydra, the shared
helpers without any framework."""
COMMANDS = ("demo.py", "export.py", "report.py")
"""The only modules at the top of ``zegclip/`` besides ``__init__.py``: the names of the
``python -m zegclip.<command>`` commands, which run a program of ``zegclip/apps``."""


def imports(path: Path) -> set[str]:
    """Every module a file imports (at any depth: lazy imports count too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            if node.module == "zegclip":  # from zegclip import cli -> zegclip.cli
                found.update(f"zegclip.{alias.name}" for alias in node.names)
    return found


def layer_of(module: str) -> str | None:
    """``zegclip.<layer>.…`` -> the layer; None for the package itself and its public names."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def layer_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).parts[0] in LAYERS)


def test_every_module_is_in_a_layer_folder() -> None:
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert top == sorted(["__init__.py", *COMMANDS]), f"modules outside a layer folder: {top}"
    folders = sorted(
        p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name not in ("__pycache__", "assets")
    )
    assert folders == sorted(LAYERS), f"zegclip/ holds folders that are no layer: {folders}"


@pytest.mark.parametrize("path", layer_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_a_layer_imports_only_the_layers_below(path: Path) -> None:
    layer = path.relative_to(PACKAGE).parts[0]
    found = imports(path)
    bad = {m for m in found if m.startswith("zegclip.") and layer_of(m) not in LAYERS[layer]}
    bad |= {m for m in found if m.split(".")[0] in FORBIDDEN_LIBRARIES.get(layer, ())}
    assert not bad, f"{path.relative_to(REPO)} ({layer} layer) imports {sorted(bad)}"


def test_nothing_imports_the_apps() -> None:
    """The apps (predict, demo, export, the sweep report's command) are programs: only the entry
    points and the command names run them, and no app imports another (what two share lives below)."""
    importers = [*PACKAGE.rglob("*.py"), *REPO.glob("*.py"), *REPO.joinpath("hydra_plugins").rglob("*.py")]
    bad = {
        str(p.relative_to(REPO)): sorted(m for m in imports(p) if layer_of(m) == "apps" and m != _module(p))
        for p in importers
    }
    allowed_entry_points = {"predict.py": ["zegclip.apps.predict"]}
    bad = {k: v for k, v in bad.items() if v and allowed_entry_points.get(k) != v}
    assert not bad, f"the apps are imported by {bad}"


def _module(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts)


@pytest.mark.parametrize("name", COMMANDS)
def test_command_names_only_run_an_app(name: str) -> None:
    path = PACKAGE / name
    assert not any(m.startswith("zegclip") for m in imports(path)), (
        f"{name} imports code; it should only run an app"
    )
    app = "sweep_report" if name == "report.py" else name.removesuffix(".py")
    assert f'"zegclip.apps.{app}"' in path.read_text() and (PACKAGE / "apps" / f"{app}.py").is_file()


def test_the_public_api_is_the_model_layer() -> None:
    """``import zegclip``'s names (``zegclip.load``, ``ZegCLIP``, ...) come from ``zegclip/model``."""
    import zegclip

    modules = set(zegclip._PUBLIC.values())
    assert modules and all(layer_of(m) == "model" for m in modules), modules


def test_the_rules_catch_a_wrong_import(tmp_path: Path) -> None:
    """The check itself: an upward import and a forbidden library are found."""
    upward = tmp_path / "bad.py"
    upward.write_text(
        "def f():\n    from zegclip.training.module import ZegCLIPModule\n    import lightning\n"
    )
    found = imports(upward)
    assert {m for m in found if layer_of(m) not in LAYERS["model"] and m.startswith("zegclip.")} == {
        "zegclip.training.module"
    }
    assert "lightning" in found
