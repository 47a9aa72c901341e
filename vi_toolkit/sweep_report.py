"""A sweep's report: the trial table (CSV), aggregates over seeds, figures and a self-contained report.html.

- ``trials.csv``: the rows of every trial's main table (the sweep file's ``table``, else the first by name) with
  the trial's swept settings and seed as columns, and ``status``, ``trial_seconds``, ``error``, ``trial``
  (its folder); a trial without tables (it failed) is one row. ``tables/<name>.csv`` does the same for each table.
- ``aggregates.csv``: per setting combination and table row (``method``...), the mean, sd and count over seeds of
  each numeric column, from the trials that completed.
- ``figures/error.png`` (error by method and setting, with the sd over seeds) and ``figures/seconds-error.png``.
"""

import base64
import math
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd

from .io import atomic_path, write_text

ERROR_COLUMNS = ("std_mean_error_max", "wasserstein_max", "w1_max", "error", "rmse", "log_loss")
TRIAL_COLUMNS = ("status", "trial_seconds", "error", "trial")


def _settings_columns(spec, trial):
    from .sweep_spec import _show

    return {key: _show(trial.settings[key]) if key in trial.settings else "" for key in spec.swept}


def _tables_of(folder):
    tables = {}
    for path in sorted((folder / "tables").glob("*.csv")):
        if path.is_symlink():
            continue
        try:
            tables[path.stem] = pd.read_csv(path)
        except (OSError, ValueError, pd.errors.ParserError):
            continue
    return tables


def trial_frames(out, spec, records):
    """(main table rows of every trial, table name -> rows of every trial)."""
    from .sweep import TRIALS

    main, per_table = [], {}
    for trial in spec.trials:
        record = records.get(trial.hash)
        if record is None:
            continue
        columns = {**_settings_columns(spec, trial), "seed": trial.seed}
        facts = {"status": record["status"], "trial_seconds": record.get("seconds", math.nan),
                 "error": record.get("error", ""), "trial": trial.folder_name}
        tables = _tables_of(Path(out) / TRIALS / trial.folder_name) if record["status"] == "done" else {}
        name = spec.table if spec.table in tables else (sorted(tables)[0] if tables else None)
        for table_name, frame in tables.items():
            frame = frame.copy()
            frame.insert(0, "_row", range(len(frame)))
            for k, (col, value) in enumerate({**columns, **facts}.items()):
                if col in frame.columns:
                    frame = frame.rename(columns={col: f"{table_name}_{col}"})
                frame.insert(k, col, value)
            per_table.setdefault(table_name, []).append(frame)
            if table_name == name:
                main.append(frame)
        if name is None:
            main.append(pd.DataFrame([{**columns, **facts, "_row": 0}]))
    table = pd.concat(main, ignore_index=True) if main else pd.DataFrame()
    return table, {k: pd.concat(v, ignore_index=True) for k, v in per_table.items()}


def aggregate(table, swept):
    """Mean, sd and count over seeds per setting combination and table row, of the completed trials."""
    if table.empty or "status" not in table:
        return pd.DataFrame()
    done = table[table["status"] == "done"]
    if done.empty:
        return pd.DataFrame()
    settings = [c for c in swept if c in done.columns]
    group = settings + ["_row"]
    skip = set(group) | {"seed", "status", "error", "trial"}
    numeric = [c for c in done.columns if c not in skip and pd.api.types.is_numeric_dtype(done[c])]
    labels = [c for c in done.columns if c not in skip and c not in numeric
              and done.groupby(group, dropna=False)[c].nunique(dropna=False).max() <= 1]
    grouped = done.groupby(group, dropna=False, sort=False)
    parts = [grouped[labels].first()] if labels else []
    parts.append(grouped["seed"].count().rename("seeds"))
    for col in numeric:
        parts.append(grouped[col].mean().rename(f"{col}_mean"))
        parts.append(grouped[col].std(ddof=1).rename(f"{col}_sd"))
    result = pd.concat(parts, axis=1).reset_index()
    return result.drop(columns="_row")


def _error_column(table):
    for col in ERROR_COLUMNS:
        if col in table.columns and pd.api.types.is_numeric_dtype(table[col]):
            return col
    skip = {"seed", "trial_seconds", "_row", "seconds"}
    numeric = [c for c in table.columns if c not in skip and pd.api.types.is_numeric_dtype(table[c])]
    return numeric[0] if numeric else None


def _figures(table, swept):
    """name -> matplotlib Figure."""
    from matplotlib.figure import Figure

    done = table[table["status"] == "done"] if "status" in table else table
    col = _error_column(done) if not done.empty else None
    if col is None:
        return {}
    settings = [c for c in swept if c in done.columns]
    combo = done[settings].astype(str).agg(" ".join, axis=1) if settings else pd.Series("all", index=done.index)
    method = done["method"].astype(str) if "method" in done.columns else pd.Series("", index=done.index)
    frame = pd.DataFrame({"combo": combo, "method": method, "value": done[col]})
    stats = frame.groupby(["combo", "method"], sort=False)["value"].agg(["mean", "std"]).reset_index()
    combos = list(dict.fromkeys(stats["combo"]))
    methods = list(dict.fromkeys(stats["method"]))
    fig = Figure(figsize=(max(6.0, 0.9 * len(combos) * max(1, len(methods)) / 2 + 3), 4.5))
    ax = fig.subplots()
    width = 0.8 / max(1, len(methods))
    for k, m in enumerate(methods):
        rows = stats[stats["method"] == m].set_index("combo").reindex(combos)
        x = np.arange(len(combos)) + (k - (len(methods) - 1) / 2) * width
        ax.bar(x, rows["mean"], width, yerr=rows["std"].fillna(0), capsize=2, label=m or col, color=f"C{k % 10}")
    ax.set_xticks(np.arange(len(combos)), combos, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(f"{col} (mean ± sd over seeds)")
    if len(methods) > 1:
        ax.legend(fontsize=7)
    fig.tight_layout()
    figures = {"error": fig}

    seconds = "seconds" if "seconds" in done.columns else "trial_seconds"
    fig = Figure(figsize=(6, 4.5))
    ax = fig.subplots()
    for k, m in enumerate(methods):
        pick = method == m
        ax.scatter(done.loc[pick, seconds], done.loc[pick, col], s=14, alpha=0.7, color=f"C{k % 10}",
                   label=m or col)
    ax.set_xlabel(f"{seconds} (s)")
    ax.set_ylabel(col)
    if len(methods) > 1:
        ax.legend(fontsize=7)
    fig.tight_layout()
    figures["seconds-error"] = fig
    return figures


def _figure_html(path):
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    name = escape(path.name)
    return f'<figure><img src="data:image/png;base64,{data}" alt="{name}"><figcaption>{name}</figcaption></figure>'


def _save_csv(path, frame):
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def _html_table(frame, links=False):
    if frame.empty:
        return '<p class="muted">none</p>'
    frame = frame.copy()
    if links and "trial" in frame.columns:
        frame["trial"] = [f'<a href="trials/{escape(t)}/report.html">{escape(t)}</a>' for t in frame["trial"]]
    return frame.to_html(index=False, float_format=lambda x: "%.4g" % x, border=0, na_rep="", escape=not links)


def write_report(out, spec, records, seconds):
    """Write trials.csv, tables/, aggregates.csv, figures/ and report.html; returns (table, aggregates, path)."""
    from .report import _CSS, _facts_table
    from .run_folder import _save_figure

    out = Path(out)
    table, per_table = trial_frames(out, spec, records)
    aggregates = aggregate(table, spec.swept)
    public = table.drop(columns="_row") if "_row" in table.columns else table
    _save_csv(out / "trials.csv", public)
    for name, frame in per_table.items():
        _save_csv(out / "tables" / f"{name}.csv", frame.drop(columns="_row"))
    _save_csv(out / "aggregates.csv", aggregates)
    figures = _figures(table, spec.swept) if not table.empty else {}
    for name, fig in figures.items():
        _save_figure(out / "figures" / f"{name}.png", fig)

    values = list(records.values())
    failed = [r for r in values if r["status"] == "failed"]
    facts = {
        "experiment": spec.experiment.name, "trials": len(values),
        "completed": sum(r["status"] == "done" for r in values), "failed": len(failed),
        "skipped (complete already)": sum(bool(r.get("skipped") or r.get("reused")) for r in values),
        "swept settings": ", ".join(spec.swept) or "(none)",
        "seeds": ", ".join(str(s) for s in sorted({t.seed for t in spec.trials})),
        "sweep seconds": round(seconds, 1),
    }
    by_hash = {t.hash: t for t in spec.trials}
    trial_rows = pd.DataFrame([
        {**_settings_columns(spec, by_hash[r["hash"]]), "seed": by_hash[r["hash"]].seed, "status": r["status"],
         "seconds": r.get("seconds", math.nan), "error": r.get("error", ""), "trial": r["folder"]}
        for r in values
    ])
    parts = [
        "<h1>vi-toolkit sweep</h1>", f"<p class='muted'>{escape(out.name)}</p>", _facts_table(facts),
    ]
    if failed:
        parts.append(f'<p class="summary"><b>{len(failed)} of {len(values)} trials failed.</b> '
                     "Their errors are in the trial table below.</p>")
    parts.append(f"<h2>Aggregates over seeds</h2>{_html_table(aggregates)}")
    if figures:
        parts.append("<h2>Figures</h2>" + "\n".join(_figure_html(out / "figures" / f"{n}.png") for n in figures))
    parts.append(f"<h2>Trials</h2>{_html_table(trial_rows, links=True)}")
    parts.append(f"<h2>Every trial's main table</h2>{_html_table(public.drop(columns='trial', errors='ignore'))}")
    page = (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>vi-toolkit sweep: '
        f"{escape(out.name)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n" + "\n".join(parts)
        + "\n</body>\n</html>\n"
    )
    report = out / "report.html"
    write_text(report, page)
    return public, aggregates, report
