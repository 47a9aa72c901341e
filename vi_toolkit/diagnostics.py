"""Can this VI fit be trusted? A verdict from the importance weights w = p(x, z) / q(z), z ~ q, of a fit.

:func:`fit_verdict` runs four checks on S draws of q and their log-weights and returns a :class:`Verdict`
(level "good", "usable" or "do not trust", and each check's number and level); :func:`render_verdict` says it
in plain words, naming the checks that failed. Each check catches failures the others miss:

- ``khat``: PSIS k-hat (Yao, Vehtari, Simpson and Gelman 2018), the tail shape of the weights: q narrower
  than p (or missing part of it) gives heavy-tailed weights. It says nothing of a q wider than p (bounded
  weights give k-hat < 0) and is not used on weights flat to within 5% (a near-exact fit: there is no tail).
- ``is_ess``: the importance-sampling effective sample size per draw, (sum w)^2 / (S sum w^2): below 1
  whenever q differs from p, wider included.
- ``elbo_iwae_gap``: log mean w - mean log w, IWAE-S minus the ELBO, in nats (about KL(q||p) for large S).
- ``is_std_mean_error`` and ``is_sd_ratio``: per parameter, q's mean and sd against the self-normalized
  (PSIS-smoothed) importance-weighted estimates of the posterior's, |mean_q - mean_w| / sd_w and
  sd_q / sd_w: the estimates, without a reference, of what :func:`vi_toolkit.compare.compare` measures
  against one.

No check sees posterior mass that q never draws (a mode q misses): there every weight looks alike.
:func:`khat_verdict` keeps the plain words of k-hat alone.
"""

import math
import warnings
from dataclasses import dataclass

import arviz as az
import numpy as np
import torch

from .agreement import flatten
from .errors import DataError
from .estimators import logmeanexp

GOOD, USABLE = 0.5, 0.7  # k-hat (Yao et al. 2018)
MIN_DRAWS = 50  # the smallest S whose tail, min(0.2 S, 3 sqrt(S)), holds the 10 weights a fit needs
FLAT = 0.05  # log-weights all within this of log mean w: no weight is 5% off the mean, k-hat is not used
# (check: good bound, usable bound); see fit_verdict for the Monte Carlo behaviour behind each
IS_ESS = (0.9, 0.1)  # relative ESS at least
GAP = (0.05, 1.0)  # ELBO-IWAE gap in nats at most
STD_MEAN_ERROR = (0.1, 0.3)  # |mean_q - mean_w| / sd_w at most
SD_RATIO = ((0.9, 1.1), (0.7, 1.3))  # sd_q / sd_w within
LEVELS = ("good", "usable", "do not trust")


def _psis(log_weights):
    """(PSIS-smoothed log-weights, normalized to log-sum-exp 0, in the input's order; k-hat): ``az.psislw``
    with r_eff = 1 and the toolkit's two limits (see :func:`psis_khat`), where the raw weights are kept, as
    they are where ArviZ's smoothing gives NaN (a tail of a few tied values, e.g. float32-rounded weights)."""
    log_weights = torch.as_tensor(log_weights, dtype=torch.float64)
    if log_weights.dim() != 1 or len(log_weights) < MIN_DRAWS or torch.isnan(log_weights).any():
        raise DataError(
            f"psis_khat needs a 1-D array of at least {MIN_DRAWS} log-weights without NaN (1000 or more for a "
            f"reliable estimate), got shape {tuple(log_weights.shape)}"
        )
    shifted = log_weights - log_weights.max()
    ordered = torch.sort(shifted)[0]
    n = len(ordered)
    cutoff_index = -int(math.ceil(min(0.2 * n, 3.0 * math.sqrt(n)))) - 1
    smallest = math.log(1.0e-15)
    cutoff = max(smallest, float(ordered[cutoff_index]))
    raw = (shifted - torch.logsumexp(shifted, 0)).numpy()
    if int((ordered > cutoff).sum()) < 10:
        return raw, (math.inf if cutoff == smallest else -math.inf)
    with warnings.catch_warnings(), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore")  # ArviZ warns of k > 0.7 (the verdict says so) and of overflow in exp
        smoothed, k = az.psislw(shifted.numpy().copy(), reff=1.0)
    return (smoothed if np.isfinite(smoothed).all() else raw), float(k)


def psis_khat(log_weights):
    """Shape k of a generalized Pareto fit to the largest importance weights w = p(x,z)/q(z), z ~ q: ArviZ's
    ``az.psislw`` (Zhang-Stephens fit with its weak prior, r_eff = 1), which gives Pyro's ``psis_diagnostic``
    value (the same tail and fit; equal to ~1e-14 on the tests' cases).

    The tail is the largest min(0.2 S, 3 sqrt(S)) of S weights. Two limits are decided before any fit, as
    before ArviZ did the fitting (ArviZ differs there, so they are kept): when fewer than 10 weights lie within
    1e-15 of the largest (a few draws carry all the weight) k = inf (ArviZ fits the few and can report a small
    or negative k); when the largest weights tie (bounded weights, e.g. q equal to p) k = -inf (ArviZ: inf).
    """
    return _psis(log_weights)[1]


def khat_verdict(k):
    """Plain words for k-hat alone (Yao et al. 2018): < 0.5 good, 0.5-0.7 usable but not perfect, > 0.7 do not
    trust. k-hat judges the tail of the weights only (a q wider than p gets k-hat < 0): :func:`fit_verdict`
    judges the fit."""
    if k < GOOD:
        return "good: the fit is close to the posterior"
    if k <= USABLE:
        return "usable, not perfect: means are fine, check variances and tails against MCMC"
    return "do not trust: q misses posterior mass"


@dataclass(frozen=True)
class Check:
    """One check of a verdict: its name, its number, its level (one of :data:`LEVELS`) and plain words."""

    name: str
    value: float
    level: str
    words: str


@dataclass(frozen=True)
class Verdict:
    """The verdict on a fit: ``level`` (the worst level of its checks), the ``checks`` and the number of
    ``draws`` behind them. ``failed``: the checks short of "good"; ``numbers``: check name -> value, and
    ``is_sd_ratio_min``/``is_sd_ratio_max`` (the ``is_sd_ratio`` check's value is the end with the worse level,
    or the one farther from 1 in log)."""

    level: str
    checks: tuple
    draws: int
    sd_ratio_range: tuple = (math.nan, math.nan)

    @property
    def failed(self):
        return tuple(check for check in self.checks if check.level != "good")

    @property
    def numbers(self):
        numbers = {check.name: check.value for check in self.checks}
        numbers["is_sd_ratio_min"], numbers["is_sd_ratio_max"] = self.sd_ratio_range
        return numbers

    def __str__(self):
        return render_verdict(self)


def _level(value, bounds, passes):
    """The level of ``value`` against (good, usable) bounds: the first bound it ``passes``."""
    return next((level for level, bound in zip(LEVELS, bounds) if passes(value, bound)), LEVELS[-1])


def is_ess(log_weights):
    """Relative importance-sampling effective sample size (sum w)^2 / (S sum w^2), in (0, 1]; 1 iff all w equal."""
    log_w = torch.as_tensor(log_weights, dtype=torch.float64)
    return float(torch.exp(2 * torch.logsumexp(log_w, 0) - torch.logsumexp(2 * log_w, 0)) / len(log_w))


def elbo_iwae_gap(log_weights):
    """IWAE-S minus the ELBO on S draws: log (1/S) sum w - (1/S) sum log w >= 0 (Jensen), about KL(q||p)."""
    log_w = torch.as_tensor(log_weights, dtype=torch.float64)
    return float(logmeanexp(log_w) - log_w.mean())


def weighted_moments(draws, log_weights):
    """Per parameter, (|mean_q - mean_w| / sd_w, sd_q / sd_w): q's draws' mean and sd against their
    self-normalized importance-weighted mean and sd under ``log_weights`` (normalized weights w_s). Returns
    label -> each (see :func:`vi_toolkit.agreement.flatten`), leaving out parameters constant under q."""
    w = np.exp(np.asarray(log_weights, dtype=float) - np.logaddexp.reduce(log_weights))
    errors, ratios = {}, {}
    for site, values in draws.items():
        values = np.asarray(values, dtype=float)
        x = values.reshape(len(values), -1)
        mean_q, sd_q = x.mean(0), x.std(0)
        mean_w = w @ x
        sd_w = np.sqrt(w @ (x - mean_w) ** 2)
        with np.errstate(divide="ignore", invalid="ignore"):
            error, ratio = np.abs(mean_q - mean_w) / sd_w, sd_q / sd_w
        error, ratio = np.nan_to_num(error, nan=np.inf), np.nan_to_num(ratio, nan=np.inf)  # sd_w = 0: one draw
        varies = (sd_q > 1e-12 * np.maximum(1.0, np.abs(mean_q))) & np.isfinite(sd_q)
        for out, stat in ((errors, error), (ratios, ratio)):
            for (label, value), keep in zip(flatten({site: stat.reshape((1,) + values.shape[1:])}).items(),
                                            varies.ravel()):
                if keep:
                    out[label] = float(value[0])
    return errors, ratios


def fit_verdict(log_weights, draws):
    """The :class:`Verdict` on q from S of its draws and their log-weights log w_s = log p(x, z_s) - log q(z_s).

    ``draws``: site (or label) -> array (S, *shape), the very draws z_s the weights weigh (for a VI result,
    ``result.draws(S, seed)`` and ``result.log_weights(S, seed)`` with one S and seed are the same draws).

    Each check is good, usable or do not trust; the verdict is the worst. Thresholds, from the checks'
    Monte Carlo behaviour with S = 4000 (``benchmarks/verdicts.py``; bad fits have a posterior-sd mean error
    above 0.3 or an sd ratio outside 0.7-1.3):

    - k-hat < 0.5 good, <= 0.7 usable (Yao et al.); not used when every log-weight is within 0.05 of log mean w
      (weights flat to 5%: a near-exact fit's k-hat is then a fit to float32 rounding noise, -5.7 to 0.04 on
      AutoNormal fits of the normal-mean pair, 3.5 on one reported fit);
    - relative IS ESS >= 0.9 good, >= 0.1 usable. A Gaussian q of sd s x p's has 1 / ESS = s^2 / sqrt(2 s^2 - 1)
      per dimension (0.66 at s = 2, 0.91 at 1.3) and a mean shift of d sds has ESS = exp(-d^2);
    - ELBO-IWAE gap <= 0.05 nats good, <= 1 usable (for log-normal weights ESS = exp(-2 gap): the same cut);
    - importance-weighted std. mean error <= 0.1 good, <= 0.3 usable, and sd ratio within 0.9-1.1 good,
      0.7-1.3 usable, per parameter. These estimate the errors against the posterior that define a bad fit,
      with a margin: q narrower than p biases the weighted sd low, toward q's.

    Nothing is "good" on less than what these see: a mode q never draws is invisible to all of them.
    """
    log_w = torch.as_tensor(log_weights, dtype=torch.float64)
    smoothed, k = _psis(log_w)
    lengths = sorted({len(np.asarray(values)) for values in draws.values()})
    if lengths != [len(log_w)]:
        raise DataError(f"fit_verdict needs the draws behind the {len(log_w)} log-weights: site -> array "
                        f"({len(log_w)}, ...); got draws of lengths {lengths}")
    spread = float((log_w - logmeanexp(log_w)).abs().max())
    if spread <= FLAT:
        khat_check = Check("khat", k, "good", f"k-hat not used: weights flat to {math.expm1(spread):.1%}")
    else:
        level = "good" if k < GOOD else "usable" if k <= USABLE else "do not trust"
        khat_check = Check("khat", k, level, f"k-hat {k:.2f}")
    ess, gap = is_ess(log_w), elbo_iwae_gap(log_w)
    errors, ratios = weighted_moments(draws, smoothed)
    checks = [
        khat_check,
        Check("is_ess", ess, _level(ess, IS_ESS, lambda v, b: v >= b), f"IS ESS {ess:.2f} of the draws"),
        Check("elbo_iwae_gap", gap, _level(gap, GAP, lambda v, b: v <= b), f"ELBO-IWAE gap {gap:.3f} nats"),
    ]
    sd_range = (math.nan, math.nan)
    if errors:
        worst = max(errors, key=lambda label: errors[label] if math.isfinite(errors[label]) else math.inf)
        error = errors[worst]
        checks.append(Check("is_std_mean_error", error, _level(error, STD_MEAN_ERROR, lambda v, b: v <= b),
                            f"mean of {worst!r} {error:.2f} weighted sds off"))
        ends = [min(ratios, key=ratios.get), max(ratios, key=ratios.get)]
        levels = {label: _level(ratios[label], SD_RATIO, lambda v, b: b[0] <= v <= b[1]) for label in ends}
        worst = max(ends, key=lambda label: (LEVELS.index(levels[label]), abs(math.log(max(ratios[label], 1e-300)))))
        checks.append(Check("is_sd_ratio", ratios[worst], levels[worst],
                            f"sd of {worst!r} {ratios[worst]:.2f}x its weighted sd"))
        sd_range = (ratios[ends[0]], ratios[ends[1]])
    level = LEVELS[max(LEVELS.index(check.level) for check in checks)]
    return Verdict(level, tuple(checks), len(log_w), sd_range)


_BOUNDS = {
    "khat": lambda level: f"good below {GOOD}" if level == "usable" else f"usable up to {USABLE}",
    "is_ess": lambda level: f"good from {IS_ESS[0]}" if level == "usable" else f"usable from {IS_ESS[1]}",
    "elbo_iwae_gap": lambda level: f"good up to {GAP[0]}" if level == "usable" else f"usable up to {GAP[1]}",
    "is_std_mean_error": lambda level: (f"good up to {STD_MEAN_ERROR[0]}" if level == "usable"
                                        else f"usable up to {STD_MEAN_ERROR[1]}"),
    "is_sd_ratio": lambda level: ("good within {}-{}" if level == "usable" else "usable within {}-{}").format(
        *SD_RATIO[0 if level == "usable" else 1]),
}
_MEANING = {
    "good": "q agrees with the posterior its importance weights show",
    "usable": "q is near the posterior, not on it: prefer MCMC or importance-weighted estimates for variances "
              "and tails",
    "do not trust": "q is far from the posterior",
}


def render_verdict(verdict):
    """A verdict in plain words: its level, what it means, and each failed check with its number and bound
    (or, for a good fit, the numbers of every check)."""
    if not verdict.failed:
        return f"good: {_MEANING['good']} ({'; '.join(check.words for check in verdict.checks)})"
    failed = sorted(verdict.failed, key=lambda check: -LEVELS.index(check.level))
    reasons = "; ".join(f"{check.words} ({_BOUNDS[check.name](check.level)})" for check in failed)
    return f"{verdict.level}: {_MEANING[verdict.level]}: {reasons}"
