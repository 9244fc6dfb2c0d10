"""Plots as plain functions: data in, matplotlib Figure out (widgets wrap the same functions)."""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator
import torch
from torch import nn

from .attacks import eval_mode
from .scaling import loglog_fit


def _img(t: torch.Tensor) -> np.ndarray:
    """C×H×W tensor → H×W (grey) or H×W×3 array for imshow."""
    a = t.detach().cpu().float()
    return a[0].numpy() if a.shape[0] == 1 else a.permute(1, 2, 0).numpy()


def _axes(ax, figsize):
    """(figure, axis): a new figure of `figsize` when `ax` is None, else `ax` and its figure."""
    if ax is None:
        return plt.subplots(figsize=figsize)
    return ax.figure, ax


def _top(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with eval_mode(model), torch.inference_mode():
        p = model(x).softmax(dim=1)
    conf, pred = p.max(dim=1)
    return pred.cpu(), conf.cpu()


def plot_adversarial_examples(
    model: nn.Module,
    x: torch.Tensor,
    x_adv: torch.Tensor,
    y: torch.Tensor,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
):
    """One row per example: clean | perturbation (amplified to full contrast) | adversarial.

    Each image is titled with the model's prediction and confidence; a wrong
    prediction is shown in red. The perturbation panel spans [−ε, +ε] in a diverging map.
    """
    n = len(x)
    names = class_names or [str(i) for i in range(10)]
    pred_c, conf_c = _top(model, x)
    pred_a, conf_a = _top(model, x_adv)
    delta = (x_adv - x).detach().cpu()
    lim = max(delta.abs().max().item(), 1e-8)
    fig, axes = plt.subplots(n, 3, figsize=(6.6, 2.2 * n + 0.4), squeeze=False)
    for i in range(n):
        truth = int(y[i])
        ax_c, ax_d, ax_a = axes[i]
        ax_c.imshow(_img(x[i]), cmap="gray", vmin=0, vmax=1)
        ax_c.set_title(f"clean: {names[int(pred_c[i])]} ({conf_c[i]:.0%})",
                       color="black" if pred_c[i] == truth else "red", fontsize=9)
        im = ax_d.imshow(delta[i].sum(0).numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax_d.set_title(f"perturbation, ‖δ‖∞ = {delta[i].abs().max():.3g}", fontsize=9)
        ax_a.imshow(_img(x_adv[i]), cmap="gray", vmin=0, vmax=1)
        ax_a.set_title(f"adversarial: {names[int(pred_a[i])]} ({conf_a[i]:.0%})",
                       color="black" if pred_a[i] == truth else "red", fontsize=9)
        for ax in (ax_c, ax_d, ax_a):
            ax.set_xticks([]), ax.set_yticks([])
        ax_c.set_ylabel(f"true: {names[truth]}", fontsize=9)
    fig.colorbar(im, ax=axes[:, 1].tolist(), shrink=0.6, location="bottom", pad=0.02)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def plot_accuracy_vs_eps(
    eps_list: Sequence[float],
    curves: Mapping[str, Sequence[float]],
    title: str = "Accuracy against perturbation size",
    chance: float | None = 0.1,
    xlabel: str = "ε (ℓ∞, pixel units)",
    ax=None,
):
    """One line per attack (or model): accuracy against ε, with chance level for reference."""
    for label, accs in curves.items():
        if len(accs) != len(eps_list):
            raise ValueError(f"curve {label!r} has {len(accs)} points for {len(eps_list)} values of ε")
    percent = {label: [100 * float(a) for a in accs] for label, accs in curves.items()}
    fig = plot_curves(eps_list, percent, xlabel, "accuracy (%)", title,
                      hline=(100 * chance, "chance") if chance is not None else None, ax=ax)
    (ax or fig.axes[0]).set_ylim(-2, 102)
    return fig


def plot_norm_balls(eps: float = 1.0, ax=None):
    """The unit balls of ℓ1, ℓ2 and ℓ∞ in two dimensions, scaled by ε."""
    fig, ax = _axes(ax, (4.2, 4.2))
    t = np.linspace(0, 2 * np.pi, 400)
    ax.plot(eps * np.cos(t), eps * np.sin(t), label="ℓ2: x₁² + x₂² ≤ ε²")
    ax.plot(eps * np.array([1, 0, -1, 0, 1]), eps * np.array([0, 1, 0, -1, 0]), label="ℓ1: |x₁| + |x₂| ≤ ε")
    ax.plot(eps * np.array([1, -1, -1, 1, 1]), eps * np.array([1, 1, -1, -1, 1]), label="ℓ∞: max(|x₁|, |x₂|) ≤ ε")
    ax.set_aspect("equal")
    ax.axhline(0, color="grey", lw=0.5), ax.axvline(0, color="grey", lw=0.5)
    ax.set_title(f"Balls of radius ε = {eps:g} around x0 = 0")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), fontsize=8)
    return fig


def plot_image_grid(images: torch.Tensor, titles: Sequence[str] | None = None, ncols: int = 8, title: str | None = None):
    """A grid of images with optional per-image titles."""
    n = len(images)
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.3 * ncols, 1.55 * nrows + 0.4), squeeze=False,
                             layout="constrained")  # keeps each row's titles clear of the row above
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([]), ax.set_yticks([])
        if i >= n:
            ax.axis("off")
            continue
        ax.imshow(_img(images[i]), cmap="gray", vmin=0, vmax=1)
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def plot_image_rows(rows: Mapping[str, torch.Tensor], col_titles: Sequence[str] | None = None, title: str | None = None,
                    row_width: float = 2.6):
    """One row of images per entry, the entry's name written on the left (e.g. one row per model)."""
    ncols = max(len(images) for images in rows.values())
    fig, axes = plt.subplots(len(rows), ncols, figsize=(row_width + 1.05 * ncols, 1.15 * len(rows) + 0.5), squeeze=False,
                             layout="constrained")
    for r, (name, images) in enumerate(rows.items()):
        for c, ax in enumerate(axes[r]):
            ax.set_xticks([]), ax.set_yticks([])
            if c >= len(images):
                ax.axis("off")
                continue
            ax.imshow(_img(images[c]), cmap="gray", vmin=0, vmax=1)
            if r == 0 and col_titles is not None:
                ax.set_title(col_titles[c], fontsize=9)
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    if title:
        fig.suptitle(title)
    return fig


def plot_input_gradients(x: torch.Tensor, grads: torch.Tensor, titles: Sequence[str] | None = None, title: str | None = None):
    """Images (top row) above their input gradients (bottom row, red = brighten raises the quantity)."""
    n = len(x)
    fig, axes = plt.subplots(2, n, figsize=(1.9 * n, 4.1), squeeze=False)
    for i in range(n):
        axes[0, i].imshow(_img(x[i]), cmap="gray", vmin=0, vmax=1)
        g = grads[i].detach().cpu().sum(0).numpy()
        lim = max(abs(g).max(), 1e-12)
        axes[1, i].imshow(g, cmap="RdBu_r", vmin=-lim, vmax=lim)
        if titles is not None:
            axes[0, i].set_title(titles[i], fontsize=9)
        for ax in axes[:, i]:
            ax.set_xticks([]), ax.set_yticks([])
    axes[0, 0].set_ylabel("image x0")
    axes[1, 0].set_ylabel("g = ∇x log p(y*|x)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_gradients_by_model(x: torch.Tensor, grads: Mapping[str, torch.Tensor], titles: Sequence[str] | None = None,
                            title: str | None = None):
    """Images (top row) and, one row per model, their input gradients (red: brightening raises log p(y*|x)).

    Each gradient is scaled to its own full contrast: the pattern matters, not the size.
    """
    n, rows = len(x), 1 + len(grads)
    fig, axes = plt.subplots(rows, n, figsize=(1.7 * n, 1.8 * rows + 0.4), squeeze=False)
    for i in range(n):
        axes[0, i].imshow(_img(x[i]), cmap="gray", vmin=0, vmax=1)
        if titles is not None:
            axes[0, i].set_title(titles[i], fontsize=9)
        for r, g_all in enumerate(grads.values(), start=1):
            g = g_all[i].detach().cpu().sum(0).numpy()
            lim = max(abs(g).max(), 1e-12)
            axes[r, i].imshow(g, cmap="RdBu_r", vmin=-lim, vmax=lim)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    axes[0, 0].set_ylabel("image x0")
    for r, name in enumerate(grads, start=1):
        axes[r, 0].set_ylabel(name, fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_curves(
    x: Sequence[float],
    curves: Mapping[str, Sequence[float]],
    xlabel: str,
    ylabel: str,
    title: str,
    hline: tuple[float, str] | None = None,
    logx: bool = False,
    ax=None,
    vline: tuple[float, str] | None = None,
    legend_below: bool = False,
):
    """Several y-against-x lines on one axis, with optional labelled horizontal and vertical reference
    lines; `legend_below` puts the legend under the axes, where it cannot hide a point."""
    fig, ax = _axes(ax, (6, 4))
    markers = "osD^vx*"
    for k, (label, ys) in enumerate(curves.items()):
        ax.plot(x, ys, marker=markers[k % len(markers)], ms=4, label=label)
    if hline is not None:
        ax.axhline(hline[0], color="grey", ls="--", lw=1, label=hline[1])
    if vline is not None:
        ax.axvline(vline[0], color="grey", ls=":", lw=1, label=vline[1])
    if logx:
        ax.set_xscale("log")
    elif all(float(v).is_integer() for v in x):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if legend_below:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize="small", frameon=False)
    else:
        ax.legend()
    return fig


def plot_paired(
    a: Sequence[float],
    b: Sequence[float],
    label_a: str,
    label_b: str,
    title: str,
    cap: float | None = None,
    ax=None,
):
    """One dot per example, (a_i, b_i), with the diagonal: dots below it have b_i < a_i.

    Infinite values (e.g. "never flipped") are drawn at `cap` and the axis says so.
    Dots are jittered slightly so that examples with equal values stay visible.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if cap is not None:
        a, b = np.minimum(a, cap), np.minimum(b, cap)
    fig, ax = _axes(ax, (4.8, 4.6))
    span = max(np.nanmax(a), np.nanmax(b), 1e-9)
    jitter = np.random.default_rng(0).uniform(-0.006, 0.006, size=(2, len(a))) * span
    below, same = (b < a).mean(), (b == a).mean()
    ax.scatter(a + jitter[0], b + jitter[1], s=14, alpha=0.6)
    ax.plot([0, span], [0, span], color="grey", ls="--", lw=1, label="equal")
    ax.set_xlabel(label_a + (f" (≥ {cap:g} = never)" if cap is not None else ""))
    ax.set_ylabel(label_b)
    ax.set_title(f"{title}\n{below:.0%} below the diagonal, {same:.0%} on it")
    ax.set_aspect("equal")
    ax.legend(loc="upper left")
    return fig


def plot_heatmap(
    table: Mapping[str, Mapping[str, float]],
    title: str,
    fmt: str = "{:.0%}",
    vmin: float = 0.0,
    vmax: float = 1.0,
    cmap: str = "viridis",
    boxes: Sequence[tuple[str, str]] = (),
    ax=None,
):
    """A rows × columns table of numbers as coloured cells with the numbers written in them.

    `table[row][column]`; columns are taken from the first row. `boxes` lists (row, column)
    cells to outline (e.g. each model's own training threat).
    """
    rows = list(table)
    cols = list(next(iter(table.values())))
    values = np.array([[float(table[r][c]) for c in cols] for r in rows])
    fig, ax = _axes(ax, (1.0 * len(cols) + 2.8, 0.45 * len(rows) + 1.4))
    image = ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    for i in range(len(rows)):
        for j in range(len(cols)):
            shade = (values[i, j] - vmin) / max(vmax - vmin, 1e-12)
            ax.text(j, i, fmt.format(values[i, j]), ha="center", va="center", fontsize=9,
                    color="black" if shade > 0.6 else "white")
    for r, c in boxes:
        i, j = rows.index(r), cols.index(c)
        ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", lw=2))
    crowded = len(cols) > 8
    ax.set_xticks(range(len(cols)), cols, rotation=40 if crowded else 0, ha="left" if crowded else "center")
    ax.set_yticks(range(len(rows)), rows)
    ax.xaxis.tick_top()
    ax.set_title(title, pad=24)
    fig.colorbar(image, ax=ax, fraction=0.03)
    return fig


def plot_grouped_bars(groups: Mapping[str, Mapping[str, float]], ylabel: str, title: str, ax=None):
    """Bars per category, one colour per series: groups[series][category] = value (categories from the first series)."""
    series = list(groups)
    categories = list(next(iter(groups.values())))
    fig, ax = _axes(ax, (max(6.0, 0.55 * len(categories) * max(1, len(series)) ** 0.5 + 2), 4))
    width = 0.8 / len(series)
    for k, name in enumerate(series):
        ax.bar(np.arange(len(categories)) + (k - (len(series) - 1) / 2) * width,
               [groups[name][c] for c in categories], width, label=name)
    ax.axhline(0, color="grey", lw=1)
    ax.set_xticks(range(len(categories)), categories, rotation=45, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    return fig


# ----------------------------------------------------------------------------- 03: dimension scaling
def plot_first_order_check(check: Mapping, ax_pair=None):
    """Left: measured against predicted |Δ log p| per digit, one colour per ε, with the diagonal.
    Right: median ratio measured / predicted against ε, with the 10–90 % band."""
    if ax_pair is None:
        fig, ax_pair = plt.subplots(1, 2, figsize=(11.5, 4.4))
    else:
        fig = ax_pair[0].figure
    left, right = ax_pair
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(check["eps"])))
    lo, hi = np.inf, 0.0
    ratios = []
    for eps, pred, meas, c in zip(check["eps"], check["predicted"], check["measured"], colours):
        p, m = (-pred).double().cpu().numpy(), (-meas).double().cpu().numpy()
        keep = (p > 0) & (m > 0)
        left.scatter(p[keep], m[keep], s=6, alpha=0.5, color=c, label=f"ε = {eps:.2g}")
        lo, hi = min(lo, p[keep].min(), m[keep].min()), max(hi, p[keep].max(), m[keep].max())
        ratios.append(meas.double() / pred.double())
    left.plot([lo, hi], [lo, hi], color="grey", ls="--", lw=1, label="measured = predicted")
    left.set_xscale("log"), left.set_yscale("log")
    left.set_xlabel("predicted drop ε·Σ|g_j|")
    left.set_ylabel("measured drop log p(y*|x0) − log p(y*|x1)")
    left.set_title("Each dot is one digit")
    left.legend(fontsize=7, loc="upper left", markerscale=2)
    left.grid(alpha=0.3)
    med = [r.median().item() for r in ratios]
    q10 = [r.quantile(0.1).item() for r in ratios]
    q90 = [r.quantile(0.9).item() for r in ratios]
    right.fill_between(check["eps"], q10, q90, alpha=0.25, label="10–90 % of digits")
    right.plot(check["eps"], med, marker="o", label="median")
    right.axhline(1.0, color="grey", ls="--", lw=1, label="first order exact")
    right.set_xscale("log"), right.set_yscale("log")
    right.set_xlabel("ε")
    right.set_ylabel("measured / predicted")
    right.set_title("Where the linear picture stops holding")
    right.legend(fontsize=8)
    right.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


def plot_loglog(d: Sequence[float], series: Mapping[str, Sequence[float]], xlabel: str, ylabel: str, title: str, ax=None):
    """Each series against d on log–log axes, with its least-squares line and slope in the legend."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4.4))
    else:
        fig = ax.figure
    d_arr = np.asarray(d, dtype=float)
    line = np.geomspace(d_arr.min(), d_arr.max(), 50)
    for k, (label, values) in enumerate(series.items()):
        slope, intercept = loglog_fit(d_arr, values)  # the fit 03 reports, drawn
        (pts,) = ax.plot(d_arr, values, "osD^v"[k % 5], ms=6, label=f"{label}: slope {slope:.2f}")
        ax.plot(line, np.exp(intercept) * line**slope, color=pts.get_color(), lw=1, alpha=0.7)
    ax.set_xscale("log"), ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return fig


def plot_flip_curves(eps_grid: Sequence[float], flip_eps: Mapping[str, torch.Tensor], ax=None):
    """Share of examples still predicted right against ε (log axis), one line per dimension.

    `flip_eps[label]` holds each example's smallest flipping ε (0: wrong already, inf: never
    flipped on the grid), as `evaluate.minimal_flipping_eps` returns it.
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4.4))
    else:
        fig = ax.figure
    grid = [float(e) for e in eps_grid if e > 0]
    for label, t in flip_eps.items():
        t = t.detach().cpu()
        # Compare in t's own dtype: a flip found at grid value e is stored as e in that dtype.
        still_right = t[None, :] > torch.tensor(grid, dtype=t.dtype)[:, None]
        ax.plot(grid, (100 * still_right.double().mean(dim=1)).numpy(), label=label)
    ax.axhline(50, color="grey", ls="--", lw=1, label="half flipped")
    ax.set_xscale("log")
    ax.set_ylim(-2, 102)
    ax.set_xlabel("ε (ℓ∞), FGSM")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("FGSM accuracy against ε")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return fig
