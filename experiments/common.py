"""What the experiments ask of any posterior result, through the posterior protocol only (:mod:`vi_toolkit.posterior`):
never which method made it.

Not an experiment itself (it defines no ``EXPERIMENT``).
"""

import arviz as az

from vi_toolkit import plots


def sampler_diagnostics(result):
    """{"max_r_hat", "min_ess_bulk", "divergences"} of a result that records divergent transitions (a sampler:
    ``result.divergences`` and the chains of its InferenceData), else {}."""
    divergences = getattr(result, "divergences", None)
    if divergences is None:
        return {}
    summary = az.summary(result.to_inference_data(), kind="diagnostics", round_to="none")
    return {"max_r_hat": float(summary.r_hat.max()), "min_ess_bulk": float(summary.ess_bulk.min()),
            "divergences": int(divergences)}


def loss_figure(results):
    """Loss traces of every result that has one (``result.losses`` not None); label -> result."""
    return plots.loss_traces({label: r.losses for label, r in results.items() if r.losses is not None})
