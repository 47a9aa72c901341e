"""What the experiments ask of any posterior result, through the posterior protocol only (:mod:`vi_toolkit.posterior`):
never which method made it.

Not an experiment itself (it defines no ``EXPERIMENT``).
"""

import functools
import json

import arviz as az

from vi_toolkit import plots
from vi_toolkit.io import write_text
from vi_toolkit.isolation import threads_limited


def on_one_thread(run):
    """An experiment's ``run(config, folder, seed)`` on one torch thread, for experiments of small tensors, where
    more threads only synchronize; the caller's thread count is back afterwards."""

    @functools.wraps(run)
    def run_on_one_thread(config, folder, seed):
        with threads_limited(1):
            return run(config, folder, seed)

    return run_on_one_thread


def sampler_diagnostics(result):
    """{"max_r_hat", "min_ess_bulk", "divergences"} of a result that records divergent transitions (a sampler:
    ``result.divergences`` and the chains of its InferenceData), else {}."""
    divergences = getattr(result, "divergences", None)
    if divergences is None:
        return {}
    summary = az.summary(result.to_inference_data(), kind="diagnostics", round_to="none")
    return {"max_r_hat": float(summary.r_hat.max()), "min_ess_bulk": float(summary.ess_bulk.min()),
            "divergences": int(divergences)}


def loss_figure(results, title=None):
    """Loss traces of every result that has one (``result.losses`` not None); label -> result. The y axis (or
    each legend entry) says what each loss is: negative ELBO, negative log joint for MAP, Renyi bound, ..."""
    traced = {label: r for label, r in results.items() if r.losses is not None}
    return plots.loss_traces({label: r.losses for label, r in traced.items()},
                             objectives={label: plots.result_loss_name(r) for label, r in traced.items()},
                             title=title)


def number(value, decimals=3):
    """``value`` with ``decimals`` decimals, or in scientific notation where that would show only zeros
    (-7.6e-06, not -0.000)."""
    value = float(value)
    if value != 0 and abs(value) < 0.5 * 10.0 ** -decimals:
        return f"{value:.2g}"
    return f"{value:.{decimals}f}"


def save_captions(folder, figures=None, tables=None):
    """Write the captions of the experiment's figures and tables (name -> one or two sentences, in the order
    the report shows them) beside them: ``figures/captions.json``, ``tables/captions.json``."""
    for kind, captions in (("figures", figures), ("tables", tables)):
        if captions:  # not sorted: the order of the names is the order of the report
            write_text(folder.path / kind / "captions.json", json.dumps(dict(captions), indent=2) + "\n")
