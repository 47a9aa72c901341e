"""Figures for runs: loss traces and marginal densities. Each function returns a Figure; the caller saves it.

Figures are built as :class:`matplotlib.figure.Figure` objects, not through pyplot: they need no display and no
backend (``fig.savefig`` renders them with Agg), are never shown, and are freed when the caller drops them.
Importing this module leaves matplotlib's backend choice to the user.
"""

import math

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from scipy import stats


def _moving_average(values, window):
    """Trailing mean over ``window`` steps (shorter at the start), same length as ``values``."""
    csum = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(idx - window, 0)
    return (csum[idx] - csum[lo]) / (idx - lo)


def loss_traces(losses):
    """One raw and one smoothed line of loss per step for each label; y clipped to the late smoothed range."""
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    lows, highs = [], []
    for k, (label, values) in enumerate(losses.items()):
        values = np.asarray(values, dtype=float).ravel()
        if values.size == 0:
            continue
        values = np.where(np.isfinite(values), values, np.nan)
        filled = np.where(np.isnan(values), np.nanmedian(values) if np.isfinite(values).any() else 0.0, values)
        smooth = _moving_average(filled, max(1, len(values) // 50))
        steps = np.arange(len(values))
        colour = f"C{k % 10}"
        ax.plot(steps, values, color=colour, alpha=0.25, linewidth=0.8)
        ax.plot(steps, smooth, color=colour, linewidth=1.8, label=label)
        late = smooth[int(0.2 * len(smooth)):]
        late = late[np.isfinite(late)]
        if late.size:
            lows.append(late.min())
            highs.append(late.max())
    if lows:
        lo, hi = min(lows), max(highs)
        pad = 0.1 * (hi - lo) if hi > lo else 0.05 * max(abs(hi), 1.0)
        ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (negative ELBO)")
    if losses:
        ax.legend(loc="upper right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _density(ax, values, colour, label, lo, hi):
    """A KDE line of ``values`` on [lo, hi], or a step histogram when the KDE is degenerate."""
    values = np.asarray(values, dtype=float).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return
    if values.size > 1 and np.ptp(values) > 0:
        try:
            grid = np.linspace(lo, hi, 200)
            ax.plot(grid, stats.gaussian_kde(values)(grid), color=colour, linewidth=1.6, label=label)
            return
        except (np.linalg.LinAlgError, ValueError):
            pass
    ax.hist(values, bins=30, density=True, histtype="step", color=colour, linewidth=1.4, label=label)


def marginals(draws, exact=None, max_panels=12):
    """One panel per parameter with each method's marginal density (same colour per method) and exact pdfs."""
    exact = exact or {}
    params = []
    for per_method in draws.values():
        params.extend(p for p in per_method if p not in params)
    params.extend(p for p in exact if p not in params)
    params = params[:max_panels]
    ncols = min(4, max(1, len(params)))
    nrows = max(1, math.ceil(len(params) / ncols))
    height = 2.6 * nrows + 0.5
    fig = Figure(figsize=(3.2 * ncols, height))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    colours = {method: f"C{k % 10}" for k, method in enumerate(draws)}
    for ax, param in zip(axes.flat, params):
        pooled = [np.asarray(m[param], dtype=float).ravel() for m in draws.values() if param in m]
        pooled = np.concatenate(pooled) if pooled else np.empty(0)
        pooled = pooled[np.isfinite(pooled)]
        ends = list(np.percentile(pooled, [0.5, 99.5])) if pooled.size else []
        if param in exact:
            mean, sd = exact[param]
            ends += [mean - 4 * sd, mean + 4 * sd]
        lo, hi = (min(ends), max(ends)) if ends else (-1.0, 1.0)
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        for method, per_method in draws.items():
            if param in per_method:
                _density(ax, per_method[param], colours[method], method, lo, hi)
        if param in exact:
            mean, sd = exact[param]
            grid = np.linspace(lo, hi, 200)
            ax.plot(grid, stats.norm.pdf(grid, mean, sd), "k--", linewidth=1.2, label="exact")
        ax.set_title(param, fontsize=10)
        ax.set_yticks([])
        ax.tick_params(labelsize=8)
    for ax in list(axes.flat)[len(params):]:
        fig.delaxes(ax)
    handles = [Line2D([], [], color=c, linewidth=1.8, label=m) for m, c in colours.items()]
    if any(p in exact for p in params):
        handles.append(Line2D([], [], color="k", linestyle="--", linewidth=1.2, label="exact"))
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / height))  # leave a strip on top for the legend
    if handles:
        fig.legend(handles=handles, loc="upper center", ncol=min(len(handles), 6), frameon=False)
    return fig
