"""``compare``: VI fits, MCMC runs and sets of draws side by side against a reference posterior, one row each."""

import math

import numpy as np
import pandas as pd
import torch
from scipy.stats import wasserstein_distance

from .agreement import flatten, moment_agreement
from .diagnostics import fit_verdict
from .errors import DataError
from .isolation import isolated
from .posterior import Posterior


def _is_moments(value):
    return isinstance(value, tuple) and len(value) == 2 and all(np.ndim(v) == 0 for v in value)


def reference_draws_and_moments(reference, draws=4000, seed=0):
    """``reference`` as (label -> 1-D draws or None, label -> (mean, sd)).

    Accepted: label -> 1-D draws; label -> (mean, sd) (no draws, so no sample distance); site -> torch
    Distribution (``pair.posterior(...)``: ``draws`` draws with ``seed``); any posterior result (its own
    draws). Every reference sd must be positive and finite, every draw finite."""
    if isinstance(reference, Posterior):
        reference = flatten(reference.draws())
    if not isinstance(reference, dict) or not reference:
        raise DataError(
            "reference must be a non-empty dict (label -> draws, label -> (mean, sd), or site -> torch "
            f"Distribution) or a posterior result; got {type(reference).__name__}"
        )
    values = list(reference.values())
    if all(_is_moments(v) for v in values):
        moments = {label: (float(m), float(s)) for label, (m, s) in reference.items()}
        _check_moments(moments)
        return None, moments
    if any(_is_moments(v) for v in values):
        raise DataError("reference mixes (mean, sd) pairs with draws; give all parameters one way")
    if all(isinstance(v, torch.distributions.Distribution) for v in values):
        with isolated(seed):
            reference = flatten({site: d.sample((draws,)).numpy() for site, d in reference.items()})
    try:
        arrays = {label: np.asarray(v, dtype=float) for label, v in reference.items()}
    except (TypeError, ValueError) as exc:
        raise DataError(f"reference draws must be numeric arrays: {exc}") from None
    flat = [label for label, v in arrays.items() if v.ndim == 0]
    if flat:
        raise DataError(f"reference of {flat[:3]} is a single number: give draws (an array), a (mean, sd) pair or a "
                        "torch Distribution")
    reference = flatten(arrays)
    for label, v in reference.items():
        if len(v) < 2 or not np.isfinite(v).all():
            raise DataError(f"reference draws of {label!r} must be at least 2 finite values")
    moments = {label: (float(v.mean()), float(v.std(ddof=1))) for label, v in reference.items()}
    _check_moments(moments)
    return reference, moments


def _check_moments(moments):
    for label, (mean, sd) in moments.items():
        if not (math.isfinite(mean) and math.isfinite(sd) and sd > 0):
            raise DataError(
                f"reference of {label!r} has mean {mean} and sd {sd}: the sd must be positive and both finite "
                "(a constant parameter cannot be compared in standard deviations; leave it out)"
            )


def standardized_w1(flat, ref_draws, ref_moments):
    """label -> W1(draws, reference draws) / reference sd, the 1-Wasserstein distance between the marginal
    samples in reference sds, for every reference label. ``flat``: label -> 1-D draws, as
    :func:`vi_toolkit.agreement.flatten` gives them, holding every reference label (:func:`compare` says which
    are missing); ``ref_draws`` and ``ref_moments`` from :func:`reference_draws_and_moments` of a reference
    with draws (not moments alone)."""
    return {p: float(wasserstein_distance(flat[p], ref_draws[p]) / ref_moments[p][1]) for p in ref_moments}


def method_draws(result, draws=None, seed=0):
    """site -> draws (n, *shape) of a posterior result (``pyro.deterministic`` sites included) or of a dict of
    draws (site or label -> array)."""
    if isinstance(result, dict):
        return {name: np.asarray(v) for name, v in result.items()}
    if isinstance(result, Posterior):
        return result.draws(draws, seed)
    raise DataError(
        f"cannot compare a {type(result).__name__}: pass a posterior result (VIResult, MCMCResult, "
        "vt.load_result(folder), ...) or a dict of draws"
    )


WEIGHT_COLUMNS = ("elbo", "khat", "is_ess", "elbo_iwae_gap", "is_std_mean_error_max", "is_sd_ratio_min",
                  "is_sd_ratio_max")


def _weight_diagnostics(result, site_draws, seed):
    """The ELBO, the verdict's numbers and the verdict in words from the importance log-weights of the draws
    ``site_draws`` (``result.draws(n, seed)``), or NaNs and "" where the result has no density."""
    n = len(next(iter(site_draws.values())))
    log_w = result.log_weights(n, seed) if isinstance(result, Posterior) else None
    if log_w is None:
        return {**dict.fromkeys(WEIGHT_COLUMNS, math.nan), "verdict": ""}
    verdict = fit_verdict(log_w, site_draws)
    numbers = verdict.numbers
    return {"elbo": float(log_w.mean()), "khat": numbers["khat"], "is_ess": numbers["is_ess"],
            "elbo_iwae_gap": numbers["elbo_iwae_gap"],
            "is_std_mean_error_max": numbers.get("is_std_mean_error", math.nan),
            "is_sd_ratio_min": numbers["is_sd_ratio_min"], "is_sd_ratio_max": numbers["is_sd_ratio_max"],
            "verdict": str(verdict)}


def compare(results, reference, *, draws=None, seed=0, reference_draws=4000):
    """One row per method: seconds, standardized mean error |mean - ref_mean| / ref_sd (max and mean over
    parameters), sd ratio sd / ref_sd (min and max), 1-Wasserstein distance per marginal in reference sds
    (W1(draws, ref draws) / ref_sd; max and mean), and for a result with importance weights (VI) the ELBO and
    the verdict of :func:`vi_toolkit.diagnostics.fit_verdict` on its draws and their weights, which needs no
    reference: its numbers ``khat`` (PSIS k-hat), ``is_ess`` (importance-sampling ESS per draw),
    ``elbo_iwae_gap`` (nats), ``is_std_mean_error_max`` and ``is_sd_ratio_min``/``_max`` (the importance-
    weighted estimates of the two agreement columns, over all the result's parameters) and ``verdict``, in
    words: "good", "usable" or "do not trust", then the checks that failed. Rows without weights (MCMC, draws)
    have NaN there and an empty verdict.

    ``results``: label -> any posterior result (:class:`vi_toolkit.posterior.Posterior`) or dict of draws
    (site or label -> array). ``reference``: see :func:`reference_draws_and_moments`. The parameters compared
    are the reference's labels (0-based, as :func:`vi_toolkit.agreement.flatten` names them); record a
    transformed parameter in the model with ``pyro.deterministic`` to compare it. Each result gives
    ``draws`` draws (None: its own, see the protocol) and, where it has a density, the log-weights of those
    same draws (``log_weights(n, seed)`` weighs ``draws(n, seed)``), with ``seed``.
    """
    if not isinstance(results, dict) or not results:
        raise DataError("results must be a non-empty dict: label -> VI/MCMC result or dict of draws")
    ref_draws, ref_moments = reference_draws_and_moments(reference, reference_draws, seed)
    rows = []
    for label, result in results.items():
        site_draws = method_draws(result, draws, seed)
        flat = flatten(site_draws)
        missing = sorted(set(ref_moments) - set(flat))
        if missing:
            raise DataError(
                f"{label!r} has no draws of reference parameter(s) {missing[:5]}{' ...' if len(missing) > 5 else ''}; "
                f"it has {sorted(flat)[:8]}. Rename its sites, or record derived quantities with pyro.deterministic"
            )
        agreement = moment_agreement(flat, ref_moments)
        row = {
            "method": label,
            "kind": result.info.get("method", "?") if isinstance(result, Posterior) else "draws",
            "seconds": float(getattr(result, "seconds", math.nan)),
            "std_mean_error_max": agreement.std_mean_error.max(),
            "std_mean_error_mean": agreement.std_mean_error.mean(),
            "sd_ratio_min": agreement.sd_ratio.min(),
            "sd_ratio_max": agreement.sd_ratio.max(),
            "w1_max": math.nan,
            "w1_mean": math.nan,
        }
        if ref_draws is not None:
            w1 = list(standardized_w1(flat, ref_draws, ref_moments).values())
            row["w1_max"], row["w1_mean"] = float(np.max(w1)), float(np.mean(w1))
        row.update(_weight_diagnostics(result, site_draws, seed))
        rows.append(row)
    return pd.DataFrame(rows)
