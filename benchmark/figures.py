"""PNG figures from stored results: relearning curves of all methods of a cell, overlaid."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def load_curves(output_dir: str | Path, cell_id: str) -> dict[str, Any] | None:
    path = Path(output_dir) / "curves" / f"{cell_id}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def plot_relearn_group(output_dir: str | Path, records: list[dict[str, Any]], path: str | Path) -> Path | None:
    """One panel per attacker: forget loss vs attack step for every method of one
    (dataset, scenario, ratio, seed), log-scale loss, with the target level L* and the
    levels L_o and L_r marked."""
    stored = [(r["method"], load_curves(output_dir, r["cell_id"])) for r in records if r.get("status") == "ok"]
    stored = [(m, c) for m, c in stored if c and c.get("curves")]
    if not stored:
        return None
    attackers = sorted({a for _, c in stored for a in c["curves"]})
    levels = stored[0][1]["levels"]
    fig, axes = plt.subplots(1, len(attackers), figsize=(6 * len(attackers), 4.2), squeeze=False)
    for ax, att in zip(axes[0], attackers, strict=True):
        for method, c in stored:
            cur = c["curves"].get(att)
            if cur:
                style = {"original": "k--", "retrain": "k-"}.get(method, "-")
                ax.plot(cur["steps"], [max(v, 1e-6) for v in cur["loss"]], style, label=method,
                        lw=2 if method in ("original", "retrain") else 1.3)
        ax.axhline(levels["L_star"], color="tab:red", ls=":", lw=1.5, label="target L*")
        ax.axhline(levels["L_r"], color="grey", ls=":", lw=1, label="oracle level L_r")
        ax.set_yscale("log")
        ax.set_xlabel(f"{att} attack step")
        ax.set_ylabel("forget loss (mean CE on D_f)")
        ax.set_title(f"relearning attack: {att}")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="upper right", ncol=2)
    r0 = records[0]
    fig.suptitle(f"{r0['dataset']} {r0['scenario']} ratio={r0['ratio']} seed={r0['seed']}", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
