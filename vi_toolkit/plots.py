"""Figures for runs: loss traces and marginal densities. Each function returns a Figure; the caller saves it.

Figures are built as :class:`matplotlib.figure.Figure` objects, not through pyplot: they need no display and no
backend (``fig.savefig`` renders them with Agg), are never shown, and are freed when the caller drops them.
Importing this module leaves matplotlib's backend choice to the user.
"""

import math
import re
import zlib

import numpy as np
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from scipy import stats

# One colour per method across the whole report: a method's name picks its colour by the first of these words it
# contains (the guide family, else the sampler or objective), so "VI normal" is orange in every figure.
_FAMILY_COLOURS = (
    ("fit_to_draws", "#17becf"),
    ("reference", "#4d4d4d"),
    ("exact", "#000000"),
    ("nuts", "#1f77b4"),
    ("cavi", "#e377c2"),
    ("iaf", "#9467bd"),
    ("mvn", "#2ca02c"),
    ("full-rank", "#2ca02c"),
    ("lowrank", "#8c564b"),
    ("delta", "#d62728"),
    ("map", "#d62728"),
    ("laplace", "#bcbd22"),
    ("pathfinder", "#17becf"),
    ("dadvi", "#7f7f7f"),
    ("batch-match", "#e7298a"),
    ("diag", "#17becf"),
    ("normal", "#ff7f0e"),
    ("local", "#7f7f7f"),
    ("reverse kl", "#ff7f0e"),
    ("renyi", "#8c564b"),
    ("wake-sleep", "#9467bd"),
    ("score climbing", "#2ca02c"),
    ("vi", "#ff7f0e"),  # a lone "VI" (mean-field)
    ("main", "#ff7f0e"),  # the VAE's main fit (a learned-variance Gaussian encoder)
    ("encoder_scale", "#17becf"),  # a VAE variant with a fixed encoder scale
)
_OTHER_COLOURS = ("#bcbd22", "#17becf", "#7f7f7f", "#e377c2", "#8c564b", "#9467bd", "#2ca02c", "#d62728")
# a guide fitted with another objective: the guide's hue, lighter or darker
_OBJECTIVE_SHADES = (("renyi", 0.45), ("forward-kl", -0.4), ("forward kl", -0.4), ("elbo-analytic", 0.25))


def _has_word(text, word):
    return re.search(rf"(?<![a-z0-9_]){re.escape(word)}(?![a-z0-9_])", text) is not None


def method_colour(name):
    """The colour of method ``name`` in every figure of the toolkit: NUTS blue, a mean-field (``normal``) guide
    orange, full-rank (``mvn``) green, IAF purple, MAP (``delta``) red, CAVI pink, reference draws dark grey.
    The guide family decides the hue; another objective than the ELBO shades it (Renyi lighter, forward KL
    darker). A name with none of the known words gets a fixed colour from a hash of the name."""
    text = str(name).lower()
    for word, colour in _FAMILY_COLOURS:
        if _has_word(text, word):
            break
    else:
        return _OTHER_COLOURS[zlib.crc32(text.encode()) % len(_OTHER_COLOURS)]
    if word in ("renyi", "wake-sleep", "score climbing", "reverse kl", "fit_to_draws", "reference", "exact"):
        return colour
    for objective, amount in _OBJECTIVE_SHADES:
        if _has_word(text, objective):
            rgb = np.array(to_rgb(colour))
            rgb = rgb + (1 - rgb) * amount if amount > 0 else rgb * (1 + amount)
            return tuple(float(c) for c in np.clip(rgb, 0, 1))
    return colour


def objective_loss_name(objective, guide=None, options=None):
    """What a fit's loss is, in words, from its objective's name (and guide: a ``delta`` guide's ELBO is the
    negative log joint at the point)."""
    objective = str(objective or "")
    if objective.startswith("elbo") or objective in ("Trace_ELBO", "TraceMeanField_ELBO", "TraceEnum_ELBO"):
        return "negative log joint (MAP)" if guide == "delta" else "negative ELBO"
    if objective == "renyi" or objective == "RenyiELBO":
        alpha = str((options or {}).get("alpha", "0"))
        return "negative IWAE bound" if alpha in ("0", "0.0") else f"negative Renyi bound (alpha={alpha})"
    if objective == "iwae-dreg":
        return "negative IWAE bound (DReG gradients)"
    if objective == "forward-kl":
        return "cross-entropy -E_p[log q] (forward KL + H[p])"
    return f"{objective} loss" if objective else "loss"


def result_loss_name(result):
    """The loss of a result in words (``objective_loss_name`` of its ``info``), or "loss" if unknown."""
    info = getattr(result, "info", None) or {}
    return objective_loss_name(info.get("objective"), info.get("guide"), info.get("options"))


def _moving_average(values, window):
    """Trailing mean over ``window`` steps (shorter at the start), same length as ``values``."""
    csum = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(idx - window, 0)
    return (csum[idx] - csum[lo]) / (idx - lo)


def loss_traces(losses, objectives=None, ylabel="loss (negative ELBO)", title=None):
    """One raw and one smoothed line of loss per step for each label (in its :func:`method_colour`); y clipped
    to the late smoothed range. ``objectives`` (label -> what the loss is, e.g. "negative ELBO") names the
    y axis when all labels share one, else each legend entry; without it the axis says ``ylabel``."""
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    objectives = {label: objectives[label] for label in losses if label in (objectives or {})}
    kinds = set(objectives.values())
    if objectives and len(kinds) == 1 and len(objectives) == len(losses):
        ylabel = f"loss ({kinds.pop()})"
    elif objectives:
        ylabel = "loss (objective in the legend; lower is better)"
    lows, highs = [], []
    for k, (label, values) in enumerate(losses.items()):
        values = np.asarray(values, dtype=float).ravel()
        if values.size == 0:
            continue
        values = np.where(np.isfinite(values), values, np.nan)
        filled = np.where(np.isnan(values), np.nanmedian(values) if np.isfinite(values).any() else 0.0, values)
        smooth = _moving_average(filled, max(1, len(values) // 50))
        steps = np.arange(len(values))
        colour = method_colour(label)
        legend = f"{label}: {objectives[label]}" if objectives and ylabel.startswith("loss (objective") else label
        ax.plot(steps, values, color=colour, alpha=0.25, linewidth=0.8)
        ax.plot(steps, smooth, color=colour, linewidth=1.8, label=legend)
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
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    if losses and ylabel.startswith("loss (objective"):  # long entries: below the axes, clear of the lines
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), fontsize=8, frameon=False)
    elif losses:
        ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _style(method):
    """Reference draws dash-dotted (so a method on top of them still shows), every method solid."""
    return "-." if str(method).lower().startswith("reference") else "-"


def _density(ax, values, colour, label, lo, hi, linestyle="-"):
    """A KDE line of ``values`` on [lo, hi], or a step histogram when the KDE is degenerate."""
    values = np.asarray(values, dtype=float).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return
    if values.size > 1 and np.ptp(values) > 0:
        try:
            grid = np.linspace(lo, hi, 200)
            ax.plot(grid, stats.gaussian_kde(values)(grid), color=colour, linewidth=1.6, label=label,
                    linestyle=linestyle)
            return
        except (np.linalg.LinAlgError, ValueError):
            pass
    ax.hist(values, bins=30, density=True, histtype="step", color=colour, linewidth=1.4, label=label)


def marginals(draws, exact=None, max_panels=12, note=None):
    """One panel per parameter with each method's marginal density (each method in its :func:`method_colour`)
    and exact pdfs; x axis the parameter's value, y axis its density. With more parameters than
    ``max_panels`` the first ones are shown and the figure's title says so (``note`` adds to it)."""
    exact = exact or {}
    params = []
    for per_method in draws.values():
        params.extend(p for p in per_method if p not in params)
    params.extend(p for p in exact if p not in params)
    total = len(params)
    params = params[:max_panels]
    if total > len(params):
        shown = f"first {len(params)} of {total} parameters shown"
        note = f"{note}; {shown}" if note else shown
    ncols = min(4, max(1, len(params)))
    nrows = max(1, math.ceil(len(params) / ncols))
    height = 2.6 * nrows + 0.5
    fig = Figure(figsize=(3.2 * ncols, height))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    colours = {method: method_colour(method) for method in draws}
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
                _density(ax, per_method[param], colours[method], method, lo, hi, _style(method))
        if param in exact:
            mean, sd = exact[param]
            grid = np.linspace(lo, hi, 200)
            ax.plot(grid, stats.norm.pdf(grid, mean, sd), "k--", linewidth=1.2, label="exact")
        ax.set_title(param, fontsize=10)
        ax.set_xlabel(f"{param} value", fontsize=8)
        ax.set_ylabel("density", fontsize=8)
        ax.set_yticks([])
        ax.tick_params(labelsize=8)
    for ax in list(axes.flat)[len(params):]:
        fig.delaxes(ax)
    handles = [Line2D([], [], color=c, linewidth=1.8, label=m, linestyle=_style(m)) for m, c in colours.items()]
    if any(p in exact for p in params):
        handles.append(Line2D([], [], color="k", linestyle="--", linewidth=1.2, label="exact"))
    ncol = min(len(handles), 6) if handles else 1
    legend_rows = math.ceil(len(handles) / ncol) if handles else 0
    top = (0.3 * legend_rows + (0.3 if note else 0.0) + 0.1) / height
    fig.tight_layout(rect=(0, 0, 1, 1 - top))  # leave a strip on top for the note and the legend
    if note:
        fig.text(0.5, 1 - 0.05 / height, note, ha="center", va="top", fontsize=9, style="italic")
    if handles:
        fig.legend(handles=handles, loc="upper center", ncol=ncol, frameon=False,
                   bbox_to_anchor=(0.5, 1 - (0.35 if note else 0.05) / height))
    return fig
