"""A self-contained HTML report of a run folder: run facts, then each experiment's config, tables, figures, results."""

import base64
import json
from html import escape
from pathlib import Path

import pandas as pd

from .errors import RunFolderError
from .io import write_text

RUN_MARKER = "run.json"
EXPERIMENT_MARKER = "experiment.json"

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { margin-top: 2em; border-bottom: 1px solid #bbb; padding-bottom: .15em; }
table { border-collapse: collapse; margin: .6em 0 1.2em; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; }
th { background: #f2f2f2; }
table.facts td, table.facts th { text-align: left; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: .85em; color: #555; }
.summary { background: #f6f8fa; border-left: 4px solid #888; padding: .4em .8em; white-space: pre-wrap; }
.muted { color: #777; }
"""


def _read_json(path):
    """The JSON object in ``path``, or None if it is missing or unreadable."""
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def _text(value):
    """A value as display text: strings as they are, other values as compact JSON."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return str(value)


def _facts_table(mapping):
    """A two-column key/value HTML table of ``mapping``."""
    rows = "".join(
        f"<tr><th>{escape(str(key))}</th><td>{escape(_text(value))}</td></tr>" for key, value in mapping.items()
    )
    return f'<table class="facts">{rows}</table>'


def _table_html(path):
    """One CSV file as an HTML table with a caption, or a note if it cannot be read."""
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        return f'<p class="muted">{escape(path.name)}: unreadable ({escape(str(exc))})</p>'
    table = frame.to_html(index=False, float_format=lambda x: "%.4g" % x, classes="table", border=0, na_rep="")
    return f"<h4>{escape(path.stem)}</h4>\n{table}"


def _figure_html(path):
    """One PNG embedded as a base64 data URI, captioned with its file name."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    name = escape(path.name)
    return f'<figure><img src="data:image/png;base64,{data}" alt="{name}"><figcaption>{name}</figcaption></figure>'


def _results_html(folder):
    """A list of saved results: name, method and seconds from each metrics.json."""
    items = []
    for method in sorted(p for p in (folder / "results").glob("*") if p.is_dir() and not p.is_symlink()):
        metrics = _read_json(method / "metrics.json")
        if metrics is None:
            items.append(f"<li>{escape(method.name)} <span class='muted'>(no readable metrics.json)</span></li>")
            continue
        seconds = metrics.get("seconds")
        seconds = f"{seconds:.1f} s" if isinstance(seconds, (int, float)) else "? s"
        items.append(f"<li><b>{escape(method.name)}</b>: {escape(str(metrics.get('method', '?')))}, {seconds}</li>")
    return f"<ul>{''.join(items)}</ul>" if items else '<p class="muted">no saved results</p>'


def _experiment_html(folder):
    """The section of one experiment folder."""
    meta = _read_json(folder / EXPERIMENT_MARKER) or {}
    parts = [f"<h2>{escape(str(meta.get('name') or folder.name))}</h2>"]
    if meta.get("description"):
        parts.append(f"<p>{escape(str(meta['description']))}</p>")
    if meta.get("summary"):
        parts.append(f'<div class="summary">{escape(str(meta["summary"]))}</div>')
    seconds = meta.get("seconds")
    if isinstance(seconds, (int, float)):
        parts.append(f"<p class='muted'>ran in {seconds:.1f} s; folder {escape(folder.name)}</p>")
    config = meta.get("config")
    if isinstance(config, dict) and config:
        parts.append("<h3>Config</h3>" + _facts_table(config))
    tables = _inside(folder, sorted((folder / "tables").glob("*.csv")))
    if tables:
        parts.append("<h3>Tables</h3>" + "\n".join(_table_html(p) for p in tables))
    figures = _inside(folder, sorted((folder / "figures").glob("*.png")))
    if figures:
        parts.append("<h3>Figures</h3>" + "\n".join(_figure_html(p) for p in figures))
    parts.append("<h3>Saved results</h3>" + _results_html(folder))
    return "\n".join(parts)


def _inside(run_dir, paths):
    """The regular files among ``paths`` that are no symlinks and lie inside ``run_dir`` (nothing outside the
    run folder is ever read into a report)."""
    root = run_dir.resolve()
    return [p for p in paths if not p.is_symlink() and p.is_file() and p.resolve().is_relative_to(root)]


def _experiment_folders(run_dir):
    """The run folder itself if it is one experiment, else its experiment sub-folders sorted by name."""
    if (run_dir / EXPERIMENT_MARKER).is_file():
        return [run_dir]
    return sorted(p for p in run_dir.iterdir()
                  if p.is_dir() and not p.is_symlink() and (p / EXPERIMENT_MARKER).is_file())


def build_report(run_dir):
    """Write ``run_dir/report.html`` (self-contained, figures inline) and return its path."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunFolderError(
            f"{str(run_dir)!r} is not a folder; pass the run folder an experiment wrote (the one holding run.json)"
        )
    if not (run_dir / RUN_MARKER).is_file():
        raise RunFolderError(
            f"{str(run_dir)!r} is not a run folder (it has no {RUN_MARKER}); "
            "pass the folder given as --out to the run, not a sub-folder or its parent"
        )
    run_meta = _read_json(run_dir / RUN_MARKER)
    if run_meta is None:
        raise RunFolderError(
            f"{str(run_dir / RUN_MARKER)!r} is not a readable JSON object; the run may have been cut off, run it again"
        )
    sections = [_experiment_html(folder) for folder in _experiment_folders(run_dir)]
    if run_meta.get("complete") is False:
        why = run_meta.get("error") or "it was interrupted or is still running"
        sections.insert(0, f'<p class="summary"><b>Incomplete run:</b> {escape(str(why))}. '
                           "Results below are partial.</p>")
    if not sections:
        sections = ['<p class="muted">no experiments found (no experiment.json in the folder or its sub-folders)</p>']
    title = "vi-toolkit report"
    body = "\n".join(
        [
            f"<h1>{title}</h1>",
            f"<p class='muted'>{escape(run_dir.name)}</p>",
            _facts_table(run_meta),
            *sections,
        ]
    )
    page = (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{title}: {escape(run_dir.name)}'
        f"</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )
    path = run_dir / "report.html"
    write_text(path, page)
    return path
