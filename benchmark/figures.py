"""PNG figures from stored results (matplotlib Agg): relearning curves of all methods of a
cell overlaid (drawn by the runner), and the leaderboard's figures: Avg Gap bars with 95%
intervals, RA vs RCD, relearning curves over seeds, and forgetting quality with the
per-example epsilons (when a population was evaluated)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from benchmark.metrics.population import example_scores  # noqa: E402
from benchmark.results import load_curves, load_population  # noqa: E402


def _runs(x: Any) -> list[dict[str, Any]]:
    """An attacker's curves as a list of dicts (one per attack repeat), from ``Curve`` objects or a stored
    file (protocol 1.0 files hold one curve per attacker)."""
    items = x if isinstance(x, list) else [x]
    out = [c.to_dict() if hasattr(c, "to_dict") else c for c in items]
    return [c for c in out if isinstance(c, dict) and c.get("steps") and len(c["steps"]) == len(c.get("acc") or [])]


def _mean_acc(runs: list[dict[str, Any]]) -> tuple[list[int], list[float]] | None:
    """The mean forget-accuracy curve over runs that share their evaluated steps (None otherwise)."""
    if not runs or any(r["steps"] != runs[0]["steps"] for r in runs):
        return None
    return runs[0]["steps"], [sum(v) / len(v) for v in zip(*(r["acc"] for r in runs), strict=True)]


def plot_relearn_group(rows: list[tuple[str, str, dict[str, Any]]], levels: dict[str, float], title: str,
                       path: str | Path) -> Path | None:
    """One panel per attacker: forget accuracy vs attack step for every method of one
    (dataset, scenario, ratio, seed), the mean over attack repeats, with the headline target
    A* and the oracle's level A_r marked.

    Args:
        rows: (label, method, {attacker: [Curve per repeat]}) per model, in memory (the runner's cell results).
        levels: ``{"A_star", "A_r", ...}`` of the group.
    """
    rows = [(label, m, c) for label, m, c in rows if c]
    if not rows:
        return None
    attackers = sorted({a for _, _, c in rows for a in c})
    fig, axes = plt.subplots(1, len(attackers), figsize=(6 * len(attackers), 4.2), squeeze=False)
    for ax, att in zip(axes[0], attackers, strict=True):
        for label, method, curves in rows:
            mean = _mean_acc(_runs(curves.get(att) or []))
            if mean is not None:
                style = {"original": "k--", "retrain": "k-"}.get(method, "-")
                ax.plot(*mean, style, label=label, lw=2 if method in ("original", "retrain") else 1.3)
        ax.axhline(levels["A_star"], color="tab:red", ls=":", lw=1.5, label="target A*")
        ax.axhline(levels["A_r"], color="grey", ls=":", lw=1, label="oracle level A_r")
        ax.set_xlabel(f"{att} attack step")
        ax.set_ylabel("forget accuracy on D_f (%), mean over repeats")
        ax.set_title(f"relearning attack: {att}")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="lower right", ncol=2)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


# ---------------------------------------------------------------------------- leaderboard figures
# rows: (label, method, {metric key: summary}, censored {RCD key: (k, n, oracle_censored)})
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
    """One point per method: retain accuracy (y) vs the headline RCD_acc of ``attacker`` (x), both with 95%
    interval error bars; a censored RCD (a lower bound) is drawn as a right-pointing
    triangle. None where no row has both values."""
    key = f"relearn/{attacker}/rcd_acc"
    pts = [(label, method, summ[key], summ["eval/ra"], cens.get(key, (0, 0, False))[0] > 0)
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
    """One panel per attacker: forget accuracy vs attack step per method, every seed's and
    repeat's curve faint and the mean bold (where they share their evaluation steps), with the
    headline target A* (mean over seeds) marked. Cells without a stored curve file are left
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
    a_star = [c["levels"]["A_star"] for _, _, c in stored if isinstance(c.get("levels"), dict)
              and isinstance(c["levels"].get("A_star"), (int, float))]
    fig, axes = plt.subplots(1, len(attackers), figsize=(5.6 * len(attackers), 4.2), squeeze=False)
    for ax, att in zip(axes[0], attackers, strict=True):
        for label in order:
            runs = [cu for lab, _, c in stored if lab == label for cu in _runs(c["curves"].get(att) or [])]
            for cu in runs:
                ax.plot(cu["steps"], cu["acc"], color=colors[label], alpha=0.25, lw=0.9)
            mean = _mean_acc(runs)
            if mean is not None:
                ax.plot(*mean, color=colors[label], lw=2.2 if methods[label] in _FIXED else 1.7,
                        label=f"{label} (n={len(runs)})", ls="--" if methods[label] == "original" else "-")
            elif runs:
                ax.plot([], [], color=colors[label], label=f"{label} (runs differ in steps)")
        if a_star:
            ax.axhline(sum(a_star) / len(a_star), color="tab:red", ls=":", lw=1.6, label="target A*")
        ax.set_xlabel(f"{att} attack step")
        ax.set_ylabel("forget accuracy on D_f (%)")
        ax.set_title(f"relearning attack: {att}", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{title}: each seed and attack repeat faint, mean bold", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def plot_forgetting_quality(output_dir: str | Path, rows: list[Row], cell_rows: list[tuple[str, str, list[Any]]],
                            path: str | Path, title: str = "", colors: dict[str, Any] | None = None) -> Path | None:
    """Left: forgetting quality (``pop/forget/quality``) per method, mean with its 95% t-interval over
    seeds (one seed: the interval over forget examples, ``quality_hw``); the oracle's line dotted.
    Right: histograms of the per-example epsilons (all seeds) per method, the oracle's filled grey.
    None where no row has a population score (``eval.population.k=0``)."""
    pts = [(label, method, s) for label, method, summ, _ in rows
           if (s := summ.get("pop/forget/quality")) and _mean(s) is not None]
    if not pts:
        return None
    colors = colors or method_colors([r[0] for r in rows], [r[1] for r in rows])
    eps: dict[str, list[float]] = {}
    cap = 0.0
    for label, _, cells in cell_rows:
        for r in cells:
            d = load_population(output_dir, str(r.get("cell_id"))) or {}
            vals = [v for v in d.get("forget_eps") or [] if isinstance(v, (int, float))]
            eps.setdefault(label, []).extend(vals)
            cap = max(cap, float(d.get("cap") or 0.0))
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 0.9 + 0.42 * max(len(pts), 6)))
    y = list(range(len(pts)))
    half = []
    for label, _, s in pts:
        hw = _half(s)
        if s.get("n") == 1 and len(eps.get(label) or []) > 1:  # one seed: the interval over forget examples
            scores = example_scores(eps[label])
            hw = float(1.96 * scores.std(ddof=1) / np.sqrt(len(scores)))
        half.append(hw)
    ax.barh(y, [_mean(s) for _, _, s in pts], xerr=half, capsize=3,
            color=[colors[label] for label, _, _ in pts], alpha=0.85, error_kw={"lw": 1.2})
    oracle = [s for label, m, s in pts if m == "retrain"]
    if oracle:
        ax.axvline(_mean(oracle[0]), color="black", ls=":", lw=1, label="oracle's own line")
        ax.legend(fontsize=7, loc="lower right")
    ax.set_yticks(y, [f"{label} (n={s['n']})" for label, _, s in pts], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("forgetting quality (higher = closer to retraining)")
    ax.set_title(f"Forgetting quality, mean ± 95% interval\n{title}", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    bins = np.linspace(0, max(cap, 0.5), 21)
    for label, method, _ in pts:
        vals = eps.get(label) or []
        if not vals:
            continue
        if method == "retrain":
            bx.hist(vals, bins=bins, color="0.7", alpha=0.8, label=f"{label} (oracle line)")
        else:
            bx.hist(vals, bins=bins, histtype="step", lw=1.4, color=colors[label], label=label)
    bx.set_xlabel("per-example epsilon on D_f (0 = like the oracles)")
    bx.set_ylabel("forget examples")
    bx.set_title("Per-example epsilons against the oracles' population", fontsize=9)
    if bx.get_legend_handles_labels()[0]:
        bx.legend(fontsize=7, loc="upper left", ncol=2)
    else:
        bx.text(0.5, 0.5, "no per-example epsilons stored", ha="center", va="center", transform=bx.transAxes)
    bx.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def plot_tuning_study(study: Any, path: str | Path) -> Path | None:
    """One method's study (:class:`benchmark.results.trials.StudyTrials`): left, Optuna's
    optimisation history (each complete trial's objective, the best so far as a step line, the
    defaults trial ringed), or for a two-objective study its Pareto front (Avg Gap against RCD);
    right, the parameter importances (fANOVA; for Avg Gap with two objectives), when they can be
    computed."""
    done = study.complete()
    if not done:
        return None
    imp = study.importances()
    fig, axes = plt.subplots(1, 2 if imp else 1, figsize=(11 if imp else 6, 3.6), squeeze=False)
    ax = axes[0][0]
    if study.multi:
        _pareto_panel(ax, study)
    else:
        _history_panel(ax, study, done)
    if imp:
        ax2 = axes[0][1]
        names = list(imp)[::-1]
        ax2.barh(names, [imp[n] for n in names], color="tab:blue")
        ax2.set_xlim(0, 1)
        ax2.set_xlabel("importance (fANOVA)" + (", for Avg Gap" if study.multi else ""))
        ax2.set_title("parameter importances", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _pareto_panel(ax: Any, study: Any) -> None:
    """Avg Gap against RCD for every complete trial, the Pareto front as a step line, the selected
    trial starred and the defaults ringed."""
    pts = [t for t in study.complete() if len(t.get("values") or []) == 2 and None not in t["values"]]
    ax.plot([t["values"][0] for t in pts], [t["values"][1] for t in pts], "o", color="tab:blue", ms=4, alpha=0.6,
            label="trial")
    front = study.front()
    if front:
        ax.step([t["values"][0] for t in front], [t["values"][1] for t in front], "o-", where="post",
                color="tab:red", ms=5, lw=1.2, label="Pareto front")
    best, d = study.best(), study.defaults()
    if best is not None:
        ax.plot([best["values"][0]], [best["values"][1]], "*", color="gold", mec="k", ms=14, label="selected")
    if d is not None:
        ax.plot([d["values"][0]], [d["values"][1]], "o", mfc="none", mec="k", ms=9, label="defaults (trial 0)")
    ax.set_xlabel("Avg Gap (lower is better)")
    ax.set_ylabel("RCD (higher: slower to relearn)")
    ax.set_title(f"{study.method} ({study.setting}): Pareto front", fontsize=10)
    ax.legend(fontsize=8)


def _history_panel(ax: Any, study: Any, done: list[dict[str, Any]]) -> None:
    xs, ys = [t["number"] for t in done], [t["value"] for t in done]
    pick = min if study.direction == "minimize" else max
    best, run = [], None
    for y in ys:
        run = y if run is None else pick(run, y)
        best.append(run)
    ax.plot(xs, ys, "o", color="tab:blue", ms=4, label="trial")
    ax.step(xs, best, where="post", color="tab:red", lw=1.5, label="best so far")
    d = study.defaults()
    if d is not None:
        ax.plot([d["number"]], [d["value"]], "o", mfc="none", mec="k", ms=9, label="defaults (trial 0)")
    objective = study.suite.get("objective") or "objective"
    ax.set_xlabel("trial")
    ax.set_ylabel(f"{objective} ({'lower' if study.direction == 'minimize' else 'higher'} is better)")
    ax.set_title(f"{study.method} ({study.setting}): optimisation history", fontsize=10)
    ax.legend(fontsize=8)


def file_label(label: str) -> str:
    """A row label as a file-name part: ``grad_ascent{lr=0.001}`` -> ``grad_ascent_lr_0.001_``."""
    import re

    return re.sub(r"[^\w.-]", "_", label)


def grid_image(grid: Any, pad: int = 1) -> np.ndarray:
    """uint8 [classes, k, C, H, W] samples -> one uint8 image [rows*H, k*W(, 3)]: one row per class."""
    g = np.asarray(grid)
    n, k, c, h, w = g.shape
    out = np.full((n * (h + pad) - pad, k * (w + pad) - pad, c), 255, dtype=np.uint8)
    for i in range(n):
        for j in range(k):
            out[i * (h + pad):i * (h + pad) + h, j * (w + pad):j * (w + pad) + w] = g[i, j].transpose(1, 2, 0)
    return out[..., 0] if c == 1 else out


def plot_sample_grids(rows: list[tuple[str, Any]], forget_classes: list[int], title: str,
                      path: str | Path) -> Path | None:
    """task=generate: one panel per model (original, oracle, each method), each one row per class
    of its fixed-seed samples (the same starting noise in every panel); the forgotten classes'
    rows are labelled in red."""
    rows = [(label, grid) for label, grid in rows if grid is not None]
    if not rows:
        return None
    n_cls = int(np.asarray(rows[0][1]).shape[0])
    fig, axes = plt.subplots(1, len(rows), figsize=(1.9 * len(rows) + 0.6, 0.28 * n_cls + 1.0), squeeze=False)
    for ax, (label, grid) in zip(axes[0], rows, strict=True):
        img = grid_image(grid)
        h = img.shape[0] / n_cls
        ax.imshow(img, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(label, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([(i + 0.5) * h for i in range(n_cls)])
        ax.set_yticklabels([str(i) for i in range(n_cls)], fontsize=6)
        for i, tick in enumerate(ax.get_yticklabels()):
            if i in forget_classes:
                tick.set_color("tab:red")
                tick.set_fontweight("bold")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)
