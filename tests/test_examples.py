"""The examples run as written, and the README shows them as they are."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ATTACK_EXAMPLE = ROOT / "examples" / "attack_any_run.py"


def _readme_block_after(marker: str) -> str:
    """The first ```python block that follows ``marker`` in the README."""
    text = (ROOT / "README.md").read_text()
    assert marker in text, f"README lost the line {marker!r}"
    m = re.search(r"```python\n(.*?)```", text[text.index(marker):], re.S)
    assert m, f"no python block after {marker!r}"
    return m.group(1)


def test_readme_shows_the_attack_example_exactly():
    block = _readme_block_after("You can attach it to any Lightning run of an `UnlearnModule`")
    assert block == ATTACK_EXAMPLE.read_text()


@pytest.mark.slow
def test_attack_example_runs_and_prints_t_and_rcd(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "WANDB_MODE": "offline"}
    proc = subprocess.run([sys.executable, str(ATTACK_EXAMPLE)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    t = dict(re.findall(r"^T_acc (\w+): ([\d.]+)(?:\+ \(censored\))?$", proc.stdout, re.M))
    assert set(t) == {"unlearned", "original", "oracle"}, proc.stdout
    t = {k: float(v) for k, v in t.items()}
    assert t["original"] == 0  # theta_o is at A_o >= A* before any step
    assert 0 < t["oracle"] <= 400 and 0 <= t["unlearned"] <= 400  # within the budget (max_steps=400)
    rcd = re.findall(r"^RCD_acc sgd: (\S+)$", proc.stdout, re.M)
    assert rcd and float(rcd[0]) == pytest.approx(t["unlearned"] / t["oracle"], abs=5e-3)
    assert list(tmp_path.iterdir()) == []  # a plain run leaves nothing behind (no logs, no checkpoints)
