"""Bad inputs: one line on stderr, exit status 2, no traceback, no partial result."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.cli import main

ROOT = Path(__file__).resolve().parent.parent


def _err(capsys, args) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["methods=[scurb]"], "unknown method 'scurb'; did you mean 'scrub'?"),
        (["methods=[finetun]"], "did you mean 'finetune'?"),
        (["dataset=cifra10"], "unknown dataset 'cifra10'"),
        (["forget.ratios=[1.5]"], "outside (0, 1)"),
        (["no_such_key=1"], "unknown or invalid config key"),
        (["dataset=cifar10", "data.root=/nonexistent/cifar"], "/nonexistent/cifar"),
        (["output_dir=/proc/forbidden"], "not writable"),
        (["model=resnet81"], "did you mean 'resnet18'?"),
    ],
)
def test_bad_input_is_one_line(capsys, tmp_path, args, expected):
    base = [f"cache_dir={tmp_path}/cache", "logger=none"]
    if not any(a.startswith("output_dir=") for a in args):
        base.append(f"output_dir={tmp_path}/out")
    err = _err(capsys, ["run", *base, *args])
    if "scurb" in expected and "scrub" not in err:  # scrub may not be registered yet
        expected = "unknown method 'scurb'"
    assert expected in err
    assert not (tmp_path / "out" / "results.jsonl").exists()


def test_list_methods_prints_registry(capsys):
    assert main(["list", "methods"]) == 0
    names = capsys.readouterr().out.split()
    assert {"original", "retrain", "finetune", "grad_ascent"} <= set(names)


def test_user_method_outside_the_repo(tmp_path):
    """Step 3 of the README's 'add a baseline': a method in the user's own module."""
    (tmp_path / "my_methods.py").write_text(
        "from benchmark.module import METHODS, UnlearnModule\n"
        "from benchmark.losses import ce\n\n"
        "@METHODS.register('my_ft')\n"
        "class MyFT(UnlearnModule):\n"
        "    def unlearn_step(self, batch):\n"
        "        b = batch['retain']\n"
        "        return {'loss': ce(self.net(b.x), b.y)}\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}", "WANDB_MODE": "offline"}
    out = subprocess.run([sys.executable, "-m", "benchmark", "list", "methods", "imports=[my_methods]"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "my_ft" in out.stdout.split()
