"""`corpus`: every inference method on every validated posteriordb posterior, against the reference draws.

For each (posterior, method, seed) the method runs by name (:func:`vi_toolkit.methods.run_method`) and
:func:`vi_toolkit.compare` sets its draws against posteriordb's reference draws: one row per fit, a method that
raises being a row with its one-line error. The posteriors are the Pyro translations that NUTS validated
(``benchmarks/corpus_nuts.py`` writes ``benchmarks/results/corpus_nuts/<name>.json``), or every translation
present when there are no such records. Where NUTS is not among the methods run, those records are NUTS's rows
(method ``nuts (records)``: the same yardstick, at the records' own draws, start and load). Without a posteriordb
folder the experiment runs nothing and says how to point to one.
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import LogNorm, to_hex
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter
from tqdm.auto import tqdm

import vi_toolkit as vt
from vi_toolkit import plots, posteriordb
from vi_toolkit.experiment import Experiment
from vi_toolkit.experiments.common import save_captions
from vi_toolkit.methods import METHODS, available, run_method, runner
from vi_toolkit.models.posteriordb_targets import load_target, translations

VALIDATION = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "corpus_nuts"  # NUTS validation records
CLOSE_MEAN, CLOSE_SD = 0.1, (0.9, 1.1)  # a close fit: every mean within 0.1 reference sds, every sd ratio 0.9-1.1
BAD_MEAN, BAD_SD = 0.3, (0.7, 1.3)  # a bad fit: some mean off by more than 0.3 sds, or some sd ratio outside 0.7-1.3
HEAT_RANGE = (0.01, 10.0)  # colour range of the error heat map (reference sds); beyond it the end colours
VI_OPTIONS, NUTS_OPTIONS = ("steps", "lr", "num_particles"), ("draws", "warmup", "chains")
RECORDS_METHOD = "nuts (records)"  # NUTS's rows read from its validation records rather than run again
RECORD_COLUMNS = ("std_mean_error_max", "sd_ratio_min", "sd_ratio_max", "w1_max", "seconds", "grad_evals")
FIRST_COLUMNS = ["posterior", "method", "seed", "parameters", "std_mean_error_max", "std_mean_error_mean",
                 "sd_ratio_min", "sd_ratio_max", "w1_max", "w1_mean", "khat", "verdict", "seconds", "grad_evals"]


@dataclass(frozen=True)
class Config:
    """Settings of `corpus` (defaults are the full-size run).

    root: posteriordb folder (empty: $VI_TOOLKIT_POSTERIORDB, else ../shared/data/posteriordb beside the project)
    posteriors: posteriordb posteriors to run (empty: every translation NUTS validated, else every translation present)
    methods: methods of vi_toolkit.methods.METHODS (empty: every one present); pathfinder, dadvi, batch-match at their defaults
    seeds: fits per posterior and method, each on its own random streams
    steps: upper bound on SVI steps per fit of the autoguide families (normal, mvn, lowrank, iaf, laplace; 0: fit_vi's default)
    lr: Adam step size of the autoguide fits (0: fit_vi's default)
    num_particles: Monte Carlo draws per gradient of the autoguide fits (0: fit_vi's default)
    draws: NUTS draws kept per chain
    warmup: NUTS warm-up (adaptation) steps per chain
    chains: NUTS chains, run in parallel worker processes
    posterior_draws: draws of each result compared (0: its own: all NUTS draws, 4000 fresh ones of a fit)
    nuts_records: where nuts is not among the methods, add NUTS's validation records as rows "nuts (records)"
    """

    root: str = ""
    posteriors: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    seeds: int = 3
    steps: int = 0
    lr: float = 0.0
    num_particles: int = 0
    draws: int = 1000
    warmup: int = 1000
    chains: int = 2
    posterior_draws: int = 0
    nuts_records: bool = True

    def __post_init__(self):
        unknown = sorted(set(self.methods) - set(METHODS))
        if unknown:
            raise ValueError(f"methods {unknown} unknown; choose from {', '.join(METHODS)}")
        untranslated = sorted(set(self.posteriors) - set(translations())) if self.posteriors else []
        if untranslated:
            raise ValueError(f"posteriors {untranslated} have no Pyro translation; translated: "
                             f"{', '.join(sorted(translations()))}")
        if self.root and not Path(self.root).is_dir():
            raise ValueError(f"root={self.root!r} is not a folder; give the posteriordb folder (one sub-folder per "
                             "posterior)")


DEMO = {"posteriors": ("eight_schools-eight_schools_noncentered", "sblri-blr"), "methods": ("mvn", "nuts"),
        "seeds": 1, "steps": 500, "lr": 0.05, "num_particles": 4, "draws": 100, "warmup": 100, "chains": 1}


def validation(folder=VALIDATION):
    """posterior name -> NUTS's validation record of its translation (``validated`` says whether it passed), from
    the records in ``folder`` (empty where there are none)."""
    records = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(Path(folder).glob("*.json"))]
    return {r["posterior"]: r for r in records}


def record_rows(records, names):
    """NUTS's rows from its validation records of ``names``: its largest standardized mean error, sd ratios and
    1-Wasserstein against the same reference draws, its seconds (start, warm-up and draws, at the load average
    the record states) and gradient evaluations (NaN in records written before they were recorded)."""
    return [{"posterior": name, "method": RECORDS_METHOD, "seed": 0,
             **{column: float(records[name].get(column, math.nan)) for column in RECORD_COLUMNS}}
            for name in names if name in records and "w1_max" in records[name]]


def replicate_seeds(seed, n):
    """(fit seed, draws seed) of each of ``n`` replicates: independent streams from
    ``numpy.random.SeedSequence(seed).spawn``, so no fit shares a stream with another or with its draws."""
    return [tuple(int(c.generate_state(1)[0]) for c in child.spawn(2))
            for child in np.random.SeedSequence(seed).spawn(n)]


def method_options(config, method):
    """The fit budget of ``method`` from the config: SVI settings for the autoguide families (those set: 0 is
    fit_vi's default), NUTS settings for ``nuts``, none (the method's own defaults) for the others."""
    names = {"fit_vi": VI_OPTIONS, "run_mcmc": NUTS_OPTIONS}.get(runner(method), ())
    return {name: getattr(config, name) for name in names if getattr(config, name)}


def one_line(exc):
    """An exception as one line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def fit_row(method, target, config, fit_seed, draws_seed):
    """The comparison row of one fit: ``vt.compare`` of the method's result with the reference, and the
    result's gradient evaluations (``info["grad_evals"]``, NaN where the method does not report them)."""
    result = run_method(method, target.pair.model, *target.args, seed=fit_seed, **method_options(config, method))
    row = vt.compare({method: result}, target.reference, draws=config.posterior_draws or None,
                     seed=draws_seed).iloc[0].to_dict()
    grad_evals = result.info.get("grad_evals")
    row["grad_evals"] = math.nan if grad_evals is None else float(grad_evals)
    return row


def run_fits(config, root, names, methods, seed, save=None):
    """The table: one row per (posterior, method, seed), with the error of a fit or a load that raised;
    ``save(table)`` gets the table so far after each posterior (a long run keeps what it has done)."""
    rows = []
    seeds = replicate_seeds(seed, config.seeds)
    with tqdm(total=len(names) * len(methods), desc="corpus", unit="fit") as bar:
        for name in names:
            try:
                target, problem = load_target(name, root=root), None
            except Exception as exc:  # noqa: BLE001 - a posterior that does not load is rows with its error
                target, problem = None, f"loading the posterior: {one_line(exc)}"
            for method in methods:
                bar.set_postfix_str(f"{name} {method}")
                for replicate, (fit_seed, draws_seed) in enumerate(seeds):
                    row = {"posterior": name, "method": method, "seed": replicate,
                           "parameters": len(target.reference) if target else math.nan}
                    try:
                        if problem:
                            raise RuntimeError(problem)
                        row.update(fit_row(method, target, config, fit_seed, draws_seed))
                    except Exception as exc:  # noqa: BLE001 - a method that fails on a posterior is a row
                        row["error"] = problem or one_line(exc)
                    rows.append({**row, "fit_seed": fit_seed, "draws_seed": draws_seed})
                bar.update()
            if save is not None:
                save(as_table(rows))
    return as_table(rows)


def as_table(rows):
    """The rows as a table with the comparison columns first, every one present even where every fit failed."""
    table = pd.DataFrame(rows)
    for column in FIRST_COLUMNS + ["error"]:  # present even where every fit failed
        if column not in table:
            table[column] = "" if column in ("verdict", "error") else math.nan
    table["error"] = table["error"].fillna("")
    ordered = [c for c in FIRST_COLUMNS if c in table] + [c for c in table if c not in FIRST_COLUMNS]
    return table[ordered]


def is_bad(table):
    """Per row: the fit is bad (some mean off by more than 0.3 reference sds, or some sd ratio outside 0.7-1.3)."""
    return ((table.std_mean_error_max > BAD_MEAN) | (table.sd_ratio_min < BAD_SD[0])
            | (table.sd_ratio_max > BAD_SD[1]))


def is_close(table):
    """Per row: the fit is close (every mean within 0.1 reference sds, every sd ratio 0.9-1.1)."""
    return ((table.std_mean_error_max <= CLOSE_MEAN) & (table.sd_ratio_min >= CLOSE_SD[0])
            & (table.sd_ratio_max <= CLOSE_SD[1]))


def verdict_word(verdict):
    """The verdict's first words (``good``, ``usable, not perfect``, ``do not trust``), or ``none``."""
    return verdict.split(":")[0] if isinstance(verdict, str) and verdict else "none"


def method_summary(table, methods):
    """Per method: fits run and failed, share of fits close to the reference, worst standardized mean error,
    median 1-Wasserstein, median seconds and median gradient evaluations."""
    rows = []
    for method in methods:
        fits = table[table.method == method]
        ok = fits[fits.error == ""]
        rows.append({
            "method": method, "fits": len(fits), "failed": len(fits) - len(ok),
            "close_share": float(is_close(fits).mean()) if len(fits) else math.nan,
            "worst_std_mean_error": float(ok.std_mean_error_max.max()) if len(ok) else math.nan,
            "median_w1_max": float(ok.w1_max.median()) if len(ok) else math.nan,
            "median_seconds": float(ok.seconds.median()) if len(ok) else math.nan,
            "median_grad_evals": float(ok.grad_evals.median()) if len(ok) else math.nan,
        })
    return pd.DataFrame(rows)


def verdict_table(table):
    """Counts of fits by verdict (rows) and actual accuracy (bad, not bad), over the fits that ran."""
    ran = table[table.error == ""]
    counts = pd.crosstab(ran.verdict.map(verdict_word), is_bad(ran).map({True: "bad fit", False: "not bad"}))
    for column in ("bad fit", "not bad"):
        if column not in counts:
            counts[column] = 0
    return counts[["bad fit", "not bad"]].rename_axis(index="verdict", columns=None).reset_index()


HEAT_COLUMNS = {"std_mean_error_max": "max |mean - ref mean| / ref sd",
                "w1_max": "max 1-Wasserstein distance / ref sd"}  # what a heat map can show, and its colour bar


def error_heat_map(table, posteriors, methods, column="std_mean_error_max"):
    """Posterior (rows) x method (columns): ``column`` (a key of :data:`HEAT_COLUMNS`: the largest standardized
    mean error, or the largest 1-Wasserstein distance in reference sds; median over seeds), annotated, on a log
    colour scale from 0.01 (green) to 10 (red; larger values show as 10); a failed fit is a grey cell."""
    ok = table[table.error == ""]
    grid = ok.pivot_table(index="posterior", columns="method", values=column, aggfunc="median")
    values = grid.reindex(index=posteriors, columns=methods).to_numpy(dtype=float)
    fig = Figure(figsize=(3.0 + 0.9 * len(methods), 1.4 + 0.38 * len(posteriors)))
    ax = fig.subplots()
    ax.set_facecolor("#bfbfbf")
    norm = LogNorm(vmin=HEAT_RANGE[0], vmax=HEAT_RANGE[1])
    image = ax.imshow(np.ma.masked_invalid(np.clip(values, *HEAT_RANGE)), cmap="RdYlGn_r", norm=norm, aspect="auto")
    for i in range(len(posteriors)):
        for j in range(len(methods)):
            v = values[i, j]
            text = "failed" if not math.isfinite(v) else (f"{v:.2g}" if 0.01 <= v < 100 else f"{v:.0e}")
            ax.text(j, i, text.replace("e+0", "e").replace("e-0", "e-"), ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(methods)), methods, rotation=30, ha="right")
    ax.set_yticks(range(len(posteriors)), posteriors, fontsize=8)
    ax.set_xlabel("method")
    ax.set_ylabel("posterior")
    bar = fig.colorbar(image, ax=ax, label=HEAT_COLUMNS[column], extend="both")
    bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    fig.tight_layout()
    return fig


def _plain_log_ticks(axis, limits):
    """Tick labels of a log axis as plain numbers (6, 20, 1500); where fewer than two powers of ten are in view,
    the minor ticks at 2 and 5 times a power of ten are labelled too."""
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    low, high = sorted(limits)
    if math.floor(math.log10(high)) - math.ceil(math.log10(low)) < 1:
        axis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:e}"[0] in "25" else ""))
    else:
        axis.set_minor_formatter(NullFormatter())


def method_colours(methods):
    """method -> its colour in every figure (:func:`vi_toolkit.plots.method_colour`), except that a method whose
    colour an earlier one has (a name the toolkit's palette does not know, coloured by a hash) gets the first
    free colour of matplotlib's Dark2 palette (apart from the toolkit's tab10 hues): no two methods look alike."""
    colours, taken = {}, set()
    for method in methods:
        colour = to_hex(plots.method_colour(method))
        if colour in taken:
            colour = next(c for c in map(to_hex, colormaps["Dark2"].colors) if c not in taken)
        colours[method] = colour
        taken.add(colour)
    return colours


def cost_figure(table, methods):
    """1-Wasserstein (max over parameters, in reference sds) against seconds and against gradient evaluations,
    one point per fit, one colour per method; log axes."""
    ok = table[(table.error == "") & (table.w1_max > 0)]
    fig = Figure(figsize=(10, 4.2))
    axes = fig.subplots(1, 2, sharey=True)
    colours = method_colours(methods)
    for ax, cost, label in zip(axes, ("seconds", "grad_evals"), ("seconds per fit", "log-density gradient evaluations")):
        shown = False
        for method in methods:
            points = ok[(ok.method == method) & (ok[cost] > 0)]
            if len(points):
                ax.scatter(points[cost], points.w1_max, s=22, alpha=0.8, color=colours[method],
                           label=method)
                shown = True
        if shown:
            ax.set_xscale("log")
            _plain_log_ticks(ax.xaxis, ax.get_xlim())
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no method reports this", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel(label)
    axes[0].set_ylabel("1-Wasserstein, max over parameters (ref sds)")
    if len(ok):
        axes[0].set_yscale("log")
        _plain_log_ticks(axes[0].yaxis, axes[0].get_ylim())
    fig.tight_layout()
    return fig


def verdict_figure(table, methods):
    """PSIS k-hat against the largest standardized mean error per fit; crosses are bad fits (mean off by more
    than 0.3 sds or an sd ratio outside 0.7-1.3); the shaded band is where the verdict says "good"."""
    ok = table[(table.error == "") & table.khat.notna()]  # k-hat = inf (a few weights dominate) shows at 3
    colours = method_colours(methods)
    fig = Figure(figsize=(6.5, 4.5))
    ax = fig.subplots()
    ax.axvspan(min(-0.5, ok.khat.clip(lower=-1).min() if len(ok) else 0), 0.5, color="#2ca02c", alpha=0.08, label='verdict "good"')
    ax.axvline(0.7, color="grey", linestyle=":", linewidth=1)
    ax.axhline(BAD_MEAN, color="grey", linestyle="--", linewidth=1)
    bad = is_bad(ok)
    for method in methods:
        mine = ok.method == method
        for flag, marker in ((False, "o"), (True, "X")):
            points = ok[mine & (bad == flag)]
            if len(points):
                ax.scatter(points.khat.clip(-1, 3), points.std_mean_error_max.clip(lower=1e-3), marker=marker,
                           s=40 if flag else 22, alpha=0.85, color=colours[method],
                           label=f"{method} ({'bad' if flag else 'not bad'})")
    fooled = int((bad & (ok.verdict.map(verdict_word) == "good")).sum())
    ax.set_yscale("log")
    _plain_log_ticks(ax.yaxis, ax.get_ylim())
    ax.set_xlabel("PSIS k-hat (clipped to -1..3)")
    ax.set_ylabel("max standardized mean error")
    ax.set_title(f'"good" verdicts on bad fits: {fooled} of {int(bad.sum())} bad fits with a k-hat', fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def no_corpus(where):
    return (f"No posteriordb corpus found ({where}); nothing was run. Point to one with --set root=FOLDER (a folder "
            f"with one sub-folder per posterior) or ${posteriordb.ENV_ROOT}.")


def run(config, folder, seed):
    root = Path(config.root) if config.root else posteriordb.default_root()
    if root is None:
        return no_corpus(f"${posteriordb.ENV_ROOT} is not set and ../shared/data/posteriordb does not exist")
    records = validation()
    if config.posteriors:
        wanted, source = list(config.posteriors), "as named"
    elif not records:
        wanted = sorted(translations())
        source = "every translated posterior (no NUTS validation records in benchmarks/results/corpus_nuts)"
    else:
        wanted = sorted(name for name, record in records.items() if record.get("validated"))
        failed = sorted(name for name, record in records.items() if not record.get("validated"))
        source = (f"the {len(wanted)} translations NUTS validated"
                  + (f"; not validated, left out: {', '.join(failed)}" if failed else ""))
    names = [name for name in wanted if (root / name).is_dir()]
    if not names:
        return no_corpus(f"none of {', '.join(wanted) or 'the translated posteriors'} is under {root}")
    methods = list(config.methods or available())

    def save(table):
        folder.save_table("corpus", table.assign(nuts_validated=table.posterior.map(
            lambda name: bool(records[name].get("validated")) if name in records else "no record")))

    table = run_fits(config, root, names, methods, seed, save=save)
    nuts_rows = record_rows(records, names) if config.nuts_records and "nuts" not in methods else []
    if nuts_rows:
        table = as_table(table.to_dict("records") + nuts_rows)
        methods.append(RECORDS_METHOD)
    save(table)
    summary = method_summary(table, methods)
    verdicts = verdict_table(table)
    folder.save_table("methods", summary)
    folder.save_table("verdicts", verdicts)
    folder.save_figure("error-heat-map", error_heat_map(table, names, methods))
    folder.save_figure("w1-heat-map", error_heat_map(table, names, methods, column="w1_max"))
    folder.save_figure("cost-vs-w1", cost_figure(table, methods))
    folder.save_figure("verdict-vs-error", verdict_figure(table, methods))
    save_captions(folder, figures={
        "error-heat-map": "Largest standardized mean error |mean - reference mean| / reference sd over each "
                          "posterior's parameters, per posterior and method (median over seeds; log colours). "
                          "Below 0.1 is a close fit, above 0.3 a bad one.",
        "w1-heat-map": "Largest 1-Wasserstein distance between a fit's marginal and the reference's, in reference "
                       "sds, per posterior and method: unlike the mean error it also sees a wrong spread (a "
                       "mean-field fit of correlated parameters has the right means and too small sds).",
        "cost-vs-w1": "Cost against accuracy: the largest 1-Wasserstein distance between a fit's marginals and the "
                      "reference's (in reference sds) per fit, against its seconds and its log-density gradient "
                      "evaluations (where the method reports them).",
        "verdict-vs-error": "Does the k-hat verdict catch bad fits? PSIS k-hat against the largest standardized mean "
                            "error per fit; crosses are bad fits (mean error > 0.3 or an sd ratio outside 0.7-1.3). "
                            "Crosses in the shaded band got the verdict good.",
    }, tables={
        "corpus": "One row per posterior, method and seed: vt.compare against posteriordb's reference draws "
                  "(standardized mean error, sd ratio, 1-Wasserstein in reference sds, k-hat and verdict), seconds, "
                  "gradient evaluations (NaN where not reported) and the error of a fit that failed; nuts_validated: "
                  "whether NUTS validated the translation (benchmarks/corpus_nuts.py); fit_seed and "
                  "draws_seed are the seeds of the fit and of its compared draws.",
        "methods": "Per method: fits, failures, share of fits close to the reference (every mean within 0.1 sds "
                   "and every sd ratio 0.9-1.1), worst standardized mean error, median 1-Wasserstein, seconds and "
                   "gradient evaluations.",
        "verdicts": "Fits by k-hat verdict against their actual accuracy (bad: mean error > 0.3 sds or an sd ratio "
                    "outside 0.7-1.3).",
    })
    fooled = verdicts.set_index("verdict")["bad fit"].get("good", 0)
    lines = [f"{len(names)} posteriors ({source}), {len(methods)} methods, {config.seeds} seed(s)."]
    for row in summary.itertuples():
        lines.append(f"{row.method}: {row.close_share:.0%} of fits within 0.1 sds and sd ratio 0.9-1.1, worst error "
                     f"{row.worst_std_mean_error:.2g} sds, median gradient evaluations "
                     f"{'not reported' if math.isnan(row.median_grad_evals) else f'{row.median_grad_evals:.3g}'}"
                     + (f", {row.failed} failed" if row.failed else "") + ".")
    lines.append(f'"good" k-hat verdicts on bad fits: {fooled} of {int(is_bad(table[table.error == ""]).sum())}.')
    return " ".join(lines)


EXPERIMENT = Experiment(
    name="corpus",
    description="Every inference method (vi_toolkit.methods) on every NUTS-validated posteriordb translation, "
    "against the reference draws: standardized mean error, sd ratio, 1-Wasserstein, k-hat verdict, seconds and "
    "gradient evaluations per posterior, method and seed.",
    config=Config,
    demo=DEMO,
    run=run,
)
