"""PNG figures from stored results (matplotlib Agg): relearning curves of all methods of a
cell overlaid (drawn by the runner), and the leaderboard's figures: Avg Gap bars with 95%
intervals, RA vs RCD, and relearning curves over seeds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from benchmark.results import load_curves  # noqa: E402


def plot_relearn_group(rows: list[tuple[str, str, dict[str, Any]]], levels: dict[str, float], title: str,
                       path: str | Path) -> Path | None:
    """One panel per attacker: forget loss vs attack step for every method of one
    (dataset, scenario, ratio, seed), log-scale loss, with the target level L* and the
    oracle's level L_r marked.

    Args:
        rows: (label, method, {attacker: Curve}) per model, in memory (the runner's cell results).
        levels: ``{"L_star", "L_r", ...}`` of the group.
    """
    rows = [(label, m, c) for label, m, c in rows if c]
    if not rows:
        return None
    attackers = sorted({a for _, _, c in rows for a in c})
    fig, axes = plt.subplots(1, len(attackers), figsize=(6 * len(attackers), 4.2), squeeze=False)
    for ax, att in zip(axes[0], attackers, strict=True):
        for label, method, curves in rows:
            cur = curves.get(att)
            if cur is not None:
                style = {"original": "k--", "retrain": "k-"}.get(method, "-")
                ax.plot(cur.steps, [max(v, 1e-6) for v in cur.loss], style, label=label,
                        lw=2 if method in ("original", "retrain") else 1.3)
        ax.axhline(levels["L_star"], color="tab:red", ls=":", lw=1.5, label="target L*")
        ax.axhline(levels["L_r"], color="grey", ls=":", lw=1, label="oracle level L_r")
        ax.set_yscale("log")
        ax.set_xlabel(f"{att} attack step")
        ax.set_ylabel("forget loss (mean CE on D_f)")
        ax.set_title(f"relearning attack: {att}")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="upper right", ncol=2)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


# ---------------------------------------------------------------------------- leaderboard figures
# rows: (label, method, {metric key: summary}, censored {attacker: (k, n, oracle_censored)})
Row = tuple[str, str, dict[str, dict[str, Any]], dict[str, tuple[int, int, bool]]]
_FIXED = {"retrain": "black", "original": "0.55"}
_ATTACKER_ORDER = ("sgd", "adam")  # the attacker the paper's theory covers first


def method_colors(labels: list[str], methods: list[str] | None = None) -> dict[str, Any]:
    """A stable colour per row: black for the oracle, grey for the original, tab10 for the rest."""
    methods = methods or labels
    cmap, out, i = plt.get_cmap("tab10"), {}, 0
    for label, method in zip(labels, methods, strict=True):
        if method in _FIXED:
            out[label] = _FIXED[method]
        else:
            out[label] = cmap(i % 10)
            i += 1
    return out


def _save(fig: Any, path: str | Path) -> Path:
    """Atomic PNG write (``benchmark.io``): a reader never sees half a figure."""
    import io

    from benchmark.io import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, dpi=110, format="png")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def _mean(s: dict[str, Any] | None) -> float | None:
    return None if not s or not s.get("n") or s.get("mean") is None else float(s["mean"])


def _half(s: dict[str, Any]) -> float:
    return float(s.get("half_width") or 0.0)


def plot_avg_gap_bars(rows: list[Row], path: str | Path, title: str = "",
                      colors: dict[str, Any] | None = None) -> Path | None:
    """Horizontal bars of the mean Avg Gap per method with 95% interval error bars, in the
    order given (the leaderboard's ranking). None where no row has an Avg Gap."""
    pts = [(label, method, s) for label, method, summ, _ in rows
           if (s := summ.get("gap/avg")) and _mean(s) is not None]
    if not pts:
        return None
    colors = colors or method_colors([r[0] for r in rows], [r[1] for r in rows])
    fig, ax = plt.subplots(figsize=(5.6, 0.9 + 0.42 * len(pts)))
    y = list(range(len(pts)))
    ax.barh(y, [_mean(s) for _, _, s in pts], xerr=[_half(s) for _, _, s in pts], capsize=3,
            color=[colors[label] for label, _, _ in pts], alpha=0.85, error_kw={"lw": 1.2})
    for yi, (_, _, s) in zip(y, pts, strict=True):
        ax.text(_mean(s) + _half(s), yi, f"  {_mean(s):.2f}", va="center", fontsize=8)
    ax.set_yticks(y, [f"{label} (n={s['n']})" for label, _, s in pts], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(left=0)
    ax.margins(x=0.18)
    ax.set_xlabel("Avg Gap to the oracle (percentage points, lower is better)")
    ax.set_title(f"Avg Gap, mean ± 95% t-interval\n{title}", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def plot_ra_vs_rcd(rows: list[Row], path: str | Path, title: str = "", attacker: str = "sgd",
                   colors: dict[str, Any] | None = None) -> Path | None:
    """One point per method: retain accuracy (y) vs RCD of ``attacker`` (x), both with 95%
    interval error bars; a censored RCD (a lower bound) is drawn as a right-pointing
    triangle. None where no row has both values."""
    key = f"relearn/{attacker}/rcd"
    pts = [(label, method, summ[key], summ["eval/ra"], cens.get(attacker, (0, 0, False))[0] > 0)
           for label, method, summ, cens in rows
           if _mean(summ.get(key)) is not None and _mean(summ.get("eval/ra")) is not None]
    if not pts:
        return None
    colors = colors or method_colors([r[0] for r in rows], [r[1] for r in rows])
    fig, ax = plt.subplots(figsize=(5.6, 4.3))
    ax.axvline(1.0, color="black", ls=":", lw=1, label="oracle RCD = 1")
    at: dict[tuple[float, float], list[str]] = {}
    for i, (label, _, x, y, censored) in enumerate(pts):
        # later points smaller, so methods that land on the same spot all stay visible
        ax.errorbar(_mean(x), _mean(y), xerr=_half(x), yerr=_half(y), fmt=">" if censored else "o",
                    ms=max(4.0, 9.0 - 1.2 * i), color=colors[label], capsize=3, lw=1.1, zorder=3 + i,
                    label=label + (" (censored)" if censored else ""))
        at.setdefault((round(_mean(x), 2), round(_mean(y), 1)), []).append(label)
    for (x, y), labels in at.items():  # one annotation per spot: coincident methods share it
        ax.annotate(", ".join(labels), (x, y), textcoords="offset points", xytext=(7, 6), fontsize=8)
    ax.set_xlabel(f"RCD-{attacker} (relearning delay vs the oracle; higher = harder to relearn)")
    ax.set_ylabel("RA: retain accuracy (%)")
    ax.set_title(f"RA vs RCD-{attacker}, mean ± 95% t-interval\n{title}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.margins(0.15)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return _save(fig, path)


def plot_relearn_seeds(output_dir: str | Path, rows: list[tuple[str, str, list[dict[str, Any]]]],
                       path: str | Path, title: str = "", colors: dict[str, Any] | None = None) -> Path | None:
    """One panel per attacker: forget loss vs attack step per method, every seed faint and
    the mean over seeds bold (where the seeds share their evaluation steps), with the
    target level L* (mean over seeds) marked. Cells without a stored curve file are left
    out. None where no curve is stored."""
    stored: list[tuple[str, str, dict[str, Any]]] = []
    for label, method, cells in rows:
        for r in cells:
            c = load_curves(output_dir, str(r.get("cell_id")))
            if c and isinstance(c.get("curves"), dict) and c["curves"]:
                stored.append((label, method, c))
    if not stored:
        return None
    found = {a for _, _, c in stored for a in c["curves"]}
    attackers = [a for a in _ATTACKER_ORDER if a in found] + sorted(found - set(_ATTACKER_ORDER))
    order = list(dict.fromkeys(label for label, _, _ in stored))
    methods = {label: m for label, m, _ in rows}
    colors = colors or method_colors([r[0] for r in rows], [r[1] for r in rows])
    l_star = [c["levels"]["L_star"] for _, _, c in stored if isinstance(c.get("levels"), dict)
              and isinstance(c["levels"].get("L_star"), (int, float))]
    fig, axes = plt.subplots(1, len(attackers), figsize=(5.6 * len(attackers), 4.2), squeeze=False)
    for ax, att in zip(axes[0], attackers, strict=True):
        for label in order:
            curves = [c["curves"][att] for lab, _, c in stored if lab == label and c["curves"].get(att)]
            curves = [cu for cu in curves if cu.get("steps") and len(cu["steps"]) == len(cu.get("loss") or [])]
            for cu in curves:
                ax.plot(cu["steps"], [max(v, 1e-6) for v in cu["loss"]], color=colors[label], alpha=0.25, lw=0.9)
            if curves and all(cu["steps"] == curves[0]["steps"] for cu in curves):
                mean = [sum(vals) / len(vals) for vals in zip(*(cu["loss"] for cu in curves), strict=True)]
                ax.plot(curves[0]["steps"], [max(v, 1e-6) for v in mean], color=colors[label],
                        lw=2.2 if methods[label] in _FIXED else 1.7, label=f"{label} (n={len(curves)})",
                        ls="--" if methods[label] == "original" else "-")
            elif curves:
                ax.plot([], [], color=colors[label], label=f"{label} (seeds differ in steps)")
        if l_star:
            ax.axhline(sum(l_star) / len(l_star), color="tab:red", ls=":", lw=1.6, label="target L*")
        ax.set_yscale("log")
        ax.set_xlabel(f"{att} attack step")
        ax.set_ylabel("forget loss (mean CE on D_f)")
        ax.set_title(f"relearning attack: {att}", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="upper right")
    fig.suptitle(f"{title}: each seed faint, mean over seeds bold", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)
