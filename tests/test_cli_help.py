"""Every command-line tool answers --help."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("module", "command"),
    [
        ("zegclip.apps.export", "zegclip.export"),
        ("zegclip.data.prepare", "zegclip.data.prepare"),
        ("zegclip.apps.demo", "zegclip.demo"),
    ],
)
def test_command_line_tools_have_help(module, command, capsys):
    """The program's --help names the command users type (``python -m zegclip.demo``, not its module)."""
    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: python -m " + command) and len(text.splitlines()) > 5


@pytest.mark.parametrize(("module", "word"), [("zegclip.export", "--onnx"), ("zegclip.demo", "ckpt_path")])
def test_help_runs_as_a_command(module, word):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0 and word in run.stdout, run.stderr


@pytest.mark.parametrize(
    ("command", "word"),
    [
        (["tools/pretrain_shapes_clip.py"], "--steps"),
        (["-m", "zegclip.report"], "--per-class"),
        (["train.py"], "dataset"),
        (["eval.py"], "ckpt_path"),
        (["predict.py"], "inputs"),
        (["benchmarks/reliability.py"], "--out"),
        (["benchmarks/shapes_ablation.py"], "--seeds"),
    ],
)
def test_scripts_answer_help(command, word):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run(
        [sys.executable, *command, "--help"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0 and word in run.stdout, run.stdout[-2000:] + run.stderr[-2000:]
