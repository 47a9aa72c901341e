"""A self-contained HTML report of a run folder that reads top-down: a table of contents, the run's facts, then
per experiment its summary, results (tables, then figures), diagnostics (loss curves), config and saved results.

Figures carry a title and a caption in words: experiments give captions per figure (and table) name in
``figures/captions.json`` and ``tables/captions.json`` (or a ``captions`` mapping in experiment.json), whose
order is the order of the report; a figure without one is titled by its humanized name. Numbers show enough
significant digits that different values look different. The page names no absolute path."""

import base64
import json
import math
import re
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import RunFolderError
from .io import write_text

RUN_MARKER = "run.json"
EXPERIMENT_MARKER = "experiment.json"

CAPTIONS = "captions.json"  # beside the figures (figures/captions.json) or tables (tables/captions.json)

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { margin-top: 2.2em; border-bottom: 1px solid #bbb; padding-bottom: .15em; }
h3 { margin-top: 1.6em; color: #333; }
h4 { margin: 1.2em 0 .2em; }
a { color: #1a5fb4; }
h2 a.up, h3 a.up { font-size: .6em; font-weight: normal; margin-left: .6em; text-decoration: none; color: #999; }
nav.toc { background: #f6f8fa; border: 1px solid #ddd; padding: .5em 1.2em; margin: 1em 0 2em; }
nav.toc p.toc-title { font-weight: bold; margin: .3em 0; }
nav.toc ul { margin: .2em 0; padding-left: 1.3em; }
nav.toc > ul > li { margin: .25em 0; }
nav.toc ul ul { display: flex; flex-wrap: wrap; gap: 0 1.1em; padding-left: 0; list-style: none; font-size: .9em; }
.scroll { overflow-x: auto; max-width: 100%; margin: .4em 0 1.2em; }
table { border-collapse: collapse; font-size: .88em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; }
table.data th, table.data td { white-space: nowrap; }
table:not(.facts):not(.data) { display: block; overflow-x: auto; max-width: 100%; }  /* a table without a box */
td.text, th.text { text-align: left; }
th { background: #f2f2f2; position: sticky; top: 0; }
table.facts td, table.facts th { text-align: left; white-space: normal; overflow-wrap: anywhere; }
table.facts th { width: 12em; }
figure { margin: 1.2em 0 2em; }
figure img { max-width: 100%; height: auto; border: 1px solid #ddd; display: block; }
figcaption { font-size: .9em; color: #444; margin-top: .35em; max-width: 60em; }
figcaption b { color: #222; }
p.caption { font-size: .9em; color: #444; margin: .1em 0 .3em; max-width: 60em; }
.summary { background: #f6f8fa; border-left: 4px solid #888; padding: .4em .8em; overflow-wrap: anywhere; }
.muted { color: #777; }
.warning { background: #fff4e5; border-left: 4px solid #e08a00; padding: .4em .8em; }
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
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
        return ", ".join(str(v) for v in value)
    try:
        return json.dumps(value, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return str(value)


def _facts_table(mapping):
    """A two-column key/value HTML table of ``mapping``, in a box that scrolls if it must."""
    rows = "".join(
        f"<tr><th>{escape(str(key))}</th><td>{escape(_text(value))}</td></tr>" for key, value in mapping.items()
    )
    return f'<div class="scroll"><table class="facts">{rows}</table></div>'


def _slug(text):
    """An HTML id from ``text``: lower case letters, digits and dashes."""
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-") or "section"


def humanize(name):
    """A file stem as a title: ``linear-regression-marginals`` -> ``Linear regression marginals``."""
    words = re.sub(r"[-_]+", " ", str(name)).strip()
    return words[:1].upper() + words[1:] if words else str(name)


# -- numbers -----------------------------------------------------------------------------------------------

_MIN_DIGITS, _MAX_DIGITS = 4, 15


def _format_number(value, digits):
    """``value`` with ``digits`` significant digits (at least all its integer digits); scientific notation for
    tiny (< 1e-4) and huge (>= 1e9) magnitudes; never ``-0.000`` for a small nonzero number."""
    if not math.isfinite(value):
        return "" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude < 1e-4 or magnitude >= 1e9:
        mantissa, exponent = f"{value:.{max(digits - 1, 1)}e}".split("e")
        mantissa = mantissa.rstrip("0").rstrip(".") if "." in mantissa else mantissa
        return f"{mantissa}e{exponent}"
    integer_digits = len(str(int(magnitude))) if magnitude >= 1 else 0
    text = f"{value:.{max(digits, integer_digits)}g}"
    if "e" in text:  # 'g' chose exponent notation for a mid-size number: write it out
        text = f"{value:.{max(digits - integer_digits, 0)}f}"
    return text


def _format_floats(frame):
    """column -> list of display strings for every float column of ``frame``. Each column gets the fewest
    significant digits (at least 4) at which its distinct values look distinct, and within each row two
    different numbers (e.g. an ELBO and an IWAE bound 0.03 apart) never show the same text."""
    columns = [c for c in frame.columns if pd.api.types.is_float_dtype(frame[c])]
    values = {c: frame[c].to_numpy(dtype=float) for c in columns}
    digits = {}
    for c in columns:
        finite = np.unique(values[c][np.isfinite(values[c])])
        for d in range(_MIN_DIGITS, _MAX_DIGITS + 1):
            digits[c] = d
            if len({_format_number(v, d) for v in finite}) == len(finite):
                break
    for _ in range(_MAX_DIGITS):  # rows: bump the columns of any two different numbers that look the same
        bumped = False
        for i in range(len(frame)):
            seen = {}
            for c in columns:
                v = values[c][i]
                if not math.isfinite(v):
                    continue
                text = _format_number(v, digits[c])
                other = seen.get(text)
                if other is not None and other[1] != v:
                    for col in (c, other[0]):
                        if digits[col] < _MAX_DIGITS:
                            digits[col] += 1
                            bumped = True
                seen[text] = (c, v)
        if not bumped:
            break
    return {c: [_format_number(v, digits[c]) for v in values[c]] for c in columns}


def _table_html(path, captions):
    """One CSV file as a titled, captioned HTML table in its own scroll box, or a note if it is unreadable."""
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        return f'<p class="muted">{escape(path.name)}: unreadable ({escape(str(exc))})</p>'
    floats = _format_floats(frame)
    text_columns = {c for c in frame.columns if c not in floats and not pd.api.types.is_numeric_dtype(frame[c])}
    head = "".join(f'<th class="text">{escape(str(c))}</th>' if c in text_columns else f"<th>{escape(str(c))}</th>"
                   for c in frame.columns)
    rows = []
    for i in range(len(frame)):
        cells = []
        for c in frame.columns:
            if c in floats:
                cells.append(f"<td>{escape(floats[c][i])}</td>")
                continue
            value = frame[c].iloc[i]
            if pd.isna(value):
                cells.append("<td></td>")
            elif pd.api.types.is_number(value) and not isinstance(value, bool):
                cells.append(f"<td>{escape(str(value))}</td>")
            else:
                cells.append(f'<td class="text">{escape(str(value))}</td>')
        rows.append(f"<tr>{''.join(cells)}</tr>")
    caption = captions.get(path.stem)
    caption = f'<p class="caption">{escape(str(caption))}</p>' if caption else ""
    return (f"<h4>{escape(humanize(path.stem))} <span class='muted'>({escape(path.name)})</span></h4>{caption}\n"
            f'<div class="scroll"><table class="data"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def _figure_html(path, captions):
    """One PNG embedded as a base64 data URI, with a title and a caption in words (the experiment's caption
    for this figure, else its humanized name) and its file name."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    title = humanize(path.stem)
    caption = captions.get(path.stem)
    words = f" {escape(str(caption))}" if caption else ""
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{escape(title)}">'
            f"<figcaption><b>{escape(title)}.</b>{words} <span class='muted'>({escape(path.name)})</span>"
            "</figcaption></figure>")


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
        kind = f"{escape(str(metrics['method']))}, " if metrics.get("method") else ""
        items.append(f"<li><b>{escape(method.name)}</b>: {kind}{seconds}</li>")
    return f"<ul>{''.join(items)}</ul>" if items else '<p class="muted">no saved results</p>'


def _captions(folder, meta, kind):
    """name -> caption for ``kind`` ("figures" or "tables"): experiment.json's ``captions`` (a flat mapping,
    or one per kind), then ``<kind>/captions.json``; the order of the names is the order of the report."""
    out = {}
    given = meta.get("captions")
    if isinstance(given, dict):
        given = given.get(kind) if isinstance(given.get(kind), dict) else given
        out.update({str(k): v for k, v in given.items() if isinstance(v, str)})
    path = folder / kind / CAPTIONS
    if _inside(folder, [path]):
        out.update({str(k): v for k, v in (_read_json(path) or {}).items() if isinstance(v, str)})
    return out


def _is_diagnostic(stem):
    """Loss curves and other fit diagnostics come after the results."""
    return bool(re.search(r"(^|[-_])(loss|losses|trace|traces|diagnostics?)($|[-_])", stem))


def _ordered(paths, captions):
    """Files in the order the experiment's captions list them, then the others by name."""
    rank = {name: i for i, name in enumerate(captions)}
    return sorted(paths, key=lambda p: (rank.get(p.stem, len(rank)), p.name))


def _experiment_sections(folder):
    """(html, toc entries) of one experiment folder: summary and results first, then diagnostics, config."""
    meta = _read_json(folder / EXPERIMENT_MARKER) or {}
    name = str(meta.get("name") or folder.name)
    anchor = _slug(name)
    figure_captions = _captions(folder, meta, "figures")
    table_captions = _captions(folder, meta, "tables")
    tables = _ordered(_inside(folder, sorted((folder / "tables").glob("*.csv"))), table_captions)
    figures = _ordered(_inside(folder, sorted((folder / "figures").glob("*.png"))), figure_captions)
    result_figures = [p for p in figures if not _is_diagnostic(p.stem)]
    diagnostic_figures = [p for p in figures if _is_diagnostic(p.stem)]

    toc, parts = [], [f'<section id="section-{anchor}">', f'<h2 id="{anchor}">{escape(name)}'
                                                         f'<a class="up" href="#contents">contents</a></h2>']

    def sub(title, key, body):
        sub_id = f"{anchor}-{key}"
        toc.append((sub_id, title))
        parts.append(f'<h3 id="{sub_id}">{escape(title)}</h3>\n{body}')

    summary = []
    if meta.get("description"):
        summary.append(f"<p>{escape(str(meta['description']))}</p>")
    if meta.get("summary"):
        summary.append(f'<div class="summary">{escape(str(meta["summary"]))}</div>')
    seconds = meta.get("seconds")
    if isinstance(seconds, (int, float)):
        seed = meta.get("seed")
        seed = f", seed {escape(str(seed))}" if seed is not None else ""
        summary.append(f"<p class='muted'>ran in {seconds:.1f} s{seed}; folder {escape(folder.name)}</p>")
    sub("Summary", "summary", "\n".join(summary) or '<p class="muted">no summary recorded</p>')
    if tables:
        sub("Results", "results", "\n".join(_table_html(p, table_captions) for p in tables))
    if result_figures:
        sub("Figures", "figures", "\n".join(_figure_html(p, figure_captions) for p in result_figures))
    if diagnostic_figures:
        sub("Diagnostics: loss curves", "diagnostics",
            "\n".join(_figure_html(p, figure_captions) for p in diagnostic_figures))
    config = meta.get("config")
    if isinstance(config, dict) and config:
        sub("Config", "config", _facts_table(config))
    sub("Saved results", "saved", _results_html(folder))
    parts.append("</section>")
    return "\n".join(parts), (anchor, name, toc)


def _toc_html(entries):
    """The table of contents: the run facts, then each experiment with its sub-sections."""
    items = ['<li><a href="#run">Run</a></li>']
    for anchor, name, subs in entries:
        links = "".join(f'<li><a href="#{sub_id}">{escape(title)}</a></li>' for sub_id, title in subs)
        items.append(f'<li><a href="#{anchor}">{escape(name)}</a><ul>{links}</ul></li>')
    return f'<nav class="toc" id="contents"><p class="toc-title">Contents</p><ul>{"".join(items)}</ul></nav>'


def _relative(mapping, run_dir):
    """``mapping`` with absolute paths inside ``run_dir`` shown relative to it (a report names no absolute
    path: it is read on other machines) and other absolute paths shown by their last part."""
    root = str(run_dir.resolve())

    def fix(value):
        if isinstance(value, str) and value.startswith("/"):
            if value == root or value.startswith(root + "/"):
                return "." + value[len(root):]
            return ".../" + Path(value).name
        if isinstance(value, list):
            return [fix(v) for v in value]
        if isinstance(value, dict):
            return {k: fix(v) for k, v in value.items()}
        return value

    return {k: fix(v) for k, v in mapping.items()}


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
    sections, entries = [], []
    for folder in _experiment_folders(run_dir):
        html, entry = _experiment_sections(folder)
        sections.append(html)
        entries.append(entry)
    seen = {}
    for i, (anchor, name, subs) in enumerate(entries):  # two experiments of one name: distinct anchors
        if anchor in seen:
            seen[anchor] += 1
            new = f"{anchor}-{seen[anchor]}"
            sections[i] = sections[i].replace(f'id="{anchor}', f'id="{new}').replace(f'id="section-{anchor}"',
                                                                                   f'id="section-{new}"')
            entries[i] = (new, name, [(s.replace(anchor, new, 1), t) for s, t in subs])
        else:
            seen[anchor] = 1
    notes = []
    if run_meta.get("complete") is False:
        why = str(run_meta.get("error") or "it was interrupted or is still running")
        why = why.replace(str(run_dir.resolve()), ".").replace(str(run_dir), ".")  # no absolute path on the page
        notes.append(f'<p class="warning"><b>Incomplete run:</b> {escape(str(why))}. Results below are partial.</p>')
    if not sections:
        sections = ['<p class="muted">no experiments found (no experiment.json in the folder or its sub-folders)</p>']
    title = "vi-toolkit report"
    name = escape(run_dir.resolve().name)
    body = "\n".join(
        [
            f"<h1>{title}</h1>",
            f"<p class='muted'>run folder {name}</p>",
            *notes,
            _toc_html(entries),
            '<h2 id="run">Run<a class="up" href="#contents">contents</a></h2>',
            _facts_table(_relative(run_meta, run_dir)),
            *sections,
        ]
    )
    page = (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{title}: {name}'
        f"</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )
    path = run_dir / "report.html"
    write_text(path, page)
    return path
