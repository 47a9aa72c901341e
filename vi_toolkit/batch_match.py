"""``vt.batch_and_match``: batch-and-match VI (Cai, Modi, Pillai, Margossian, Gower, Blei & Saul 2024).

This module's one job: fit a full-rank Gaussian q = N(mu, Sigma) over the model's unconstrained coordinates
u (:class:`~vi_toolkit.log_density.UnconstrainedModel`) by BaM's proximal steps on the score-based divergence.
Step t draws a batch z_1..z_B ~ q_t with their scores g_b = grad log p(z_b) and, with learning rate lambda_t,

    z_bar, g_bar = batch means;  C, Gamma = batch covariances of z and of g (1/B)
    U = lambda Gamma + lambda / (1 + lambda) g_bar g_bar^T
    V = Sigma_t + lambda C + lambda / (1 + lambda) (mu_t - z_bar)(mu_t - z_bar)^T
    Sigma_{t+1} solves Sigma U Sigma + Sigma = V,  i.e.  Sigma = 2 V (I + (I + 4 U V)^{1/2})^{-1}
    mu_{t+1} = mu_t / (1 + lambda) + lambda / (1 + lambda) (Sigma_{t+1} g_bar + z_bar).

The matrix equation is solved in symmetric form: V = L L^T, M = L^T U L = W diag(w) W^T, Sigma = L W diag(2 /
(1 + sqrt(1 + 4 w))) W^T L^T, positive definite by construction. For a Gaussian target (a linear score) the
target is a fixed point of every step for any batch, and for B > D the only one, so BaM recovers it exactly
(to floating point). Learning rate: the paper's schedules, decaying lambda_t = lambda_0 / (t + 1) (its
choice for non-Gaussian targets, where a constant rate leaves the fit fluctuating at a noise floor) or constant
lambda_t = lambda_0 (its choice for Gaussian targets, where it converges geometrically; ``decay=False``).
lambda_0 is the paper's B D from N(0, I), and B from a Gaussian start: a step weighs the batch against q_t by
lambda / (1 + lambda), so while lambda_t > 1 (steps t < lambda_0 - 1) each step is mostly one batch of B draws,
noisy on a non-Gaussian target, and only after that do the steps average batches. From N(0, I) the first steps
must travel; from the Laplace start there is little to travel, and with B D the fit after 200 steps was still
the noise of its last few batches. Measured from the Laplace start on the 34 NUTS-validated posteriordb
posteriors (one seed, 200 steps; the corpus table's batch-and-match rows before and after the change): the
worst marginal's 1-Wasserstein distance to the reference draws with lambda_0 = B was a median 0.97 times that
with B D (smaller on 23 of 34), and 1.02 times default full-rank ADVI's (1.10 with B D).

q_0 is the Laplace start of :mod:`vi_toolkit.gaussian_start` where the model has one, else N(0, I), or a given
Gaussian: BaM's steps shrink the covariance at once when q_0 lies far out in the target's tails, and then move
the mean slowly (from N(0, I), posteriordb's earnings-earn_height in dollars, 6e4 sds away, is out of its reach
in 200 steps; from N(0, I) 23 of the 34 validated posteriordb posteriors ended 6 or more sds off).
"""

import time

import numpy as np
import torch
from tqdm.auto import tqdm

from .errors import ConfigError, NumericalError
from .gaussian_start import gaussian_start, start_info
from .problem import Problem
from .log_density import precise_target
from .unconstrained_gaussian import gaussian_result, log_density_and_score
from .validate import positive, whole
from .validate import seed as check_seed


def batch_and_match(model, *args, batch_size=16, steps=200, learning_rate=None, decay=True, init=None, seed=0,
                    progress=False, **model_kwargs):
    """Batch-and-match fit of ``model`` given ``*args, **model_kwargs`` (or a :class:`~vi_toolkit.Problem`):
    a :class:`~vi_toolkit.unconstrained_gaussian.GaussianResult` (``info["method"] == "batch-match"``).

    ``batch_size``: B draws (and scores) per step; ``steps``: T steps; ``learning_rate``: lambda_0 (None:
    B D from N(0, I), the paper's choice, and B from the Laplace start or a given ``init``; module docstring),
    ``decay``: lambda_t = lambda_0 / (t + 1), else lambda_0 at every step;
    ``init``: q_0 as (loc (D,), covariance (D, D)) in UnconstrainedModel coordinates (another fit's
    ``gaussian()``, say); None (default): the Laplace start where the model has one (``info["start"]`` says
    which, or why not), else N(0, I); False: N(0, I). ``seed``: the draws' stream (numpy's generator).
    ``losses``: per step, the batch's estimate of the negative ELBO at q_t, -mean_b log p(z_b) - entropy(q_t);
    ``grad_evals`` = B T and the start's. NumericalError (with ``partial_result``, the Gaussian before the step)
    where a score is not finite; a smaller ``learning_rate`` takes smaller steps."""
    batch_size, steps = whole("batch_size", batch_size), whole("steps", steps)
    seed = check_seed(seed)
    start = time.perf_counter()
    problem = Problem.of(model, *args, **model_kwargs)
    rng = np.random.default_rng(seed)
    if init is None:
        laplace, reason = gaussian_start(problem, seed)
        started = start_info(laplace, reason)
        init = False if laplace is None else (laplace.loc, laplace.cov)
    elif init is False:
        started = start_info(None, "init=False")
    else:
        started = {"source": "given", "reason": "", "grad_evals": 0}
    with precise_target(problem, seed) as density:
        dim = density.dim
        mean, covariance = _start(init, dim)
        if learning_rate is None:
            lambda_0 = batch_size * dim if init is False else batch_size
        else:
            lambda_0 = positive("learning_rate", learning_rate)
        losses = []
        for step in tqdm(range(steps), desc="batch-and-match", disable=not progress, leave=False):
            chol = np.linalg.cholesky(covariance)
            z = mean + rng.standard_normal((batch_size, dim)) @ chol.T
            u = torch.as_tensor(z).to(density.dtype)
            log_p, score = (part.double().numpy() for part in log_density_and_score(density, u))
            if not (np.isfinite(log_p).all() and np.isfinite(score).all()):
                raise NumericalError(
                    f"batch-and-match step {step}: the log density or its gradient is not finite at "
                    f"{int((~np.isfinite(log_p)).sum())} of {batch_size} draws; try a smaller learning_rate",
                    step=step, partial_result=_result(problem, mean, covariance, losses, start, step, batch_size,
                                                      lambda_0, decay, seed, density, started))
            entropy = 0.5 * dim * (1 + np.log(2 * np.pi)) + np.log(np.diag(chol)).sum()
            losses.append(float(-log_p.mean() - entropy))
            mean, covariance = bam_step(mean, covariance, z, score, lambda_0 / (step + 1) if decay else lambda_0)
    return _result(problem, mean, covariance, losses, start, steps, batch_size, lambda_0, decay, seed, density,
                   started)


def _start(init, dim):
    """(mean (D,), covariance (D, D)) of q_0 as float64 numpy: N(0, I) for ``init=False``, else ``init``
    checked (ConfigError if it is no Gaussian of dimension D)."""
    if init is False:
        return np.zeros(dim), np.eye(dim)
    try:
        mean, covariance = (np.array(part, dtype=np.float64) for part in init)
        np.linalg.cholesky(covariance)
        ok = mean.shape == (dim,) and covariance.shape == (dim, dim) and np.isfinite(mean).all()
    except (TypeError, ValueError, np.linalg.LinAlgError):
        ok = False
    if not ok:
        raise ConfigError(f"init must be (loc of shape ({dim},), a positive definite covariance ({dim}, {dim})) "
                          "in the model's unconstrained coordinates, such as another fit's gaussian()")
    return mean, covariance


def bam_step(mean, covariance, z, score, lam):
    """One BaM step (module docstring): (mu_{t+1}, Sigma_{t+1}) from q_t = N(mean, covariance), the batch
    ``z`` (B, D), its scores ``score`` (B, D) and the learning rate ``lam``."""
    z_bar, g_bar = z.mean(0), score.mean(0)
    c = np.cov(z, rowvar=False, bias=True).reshape(len(mean), len(mean))
    gamma = np.cov(score, rowvar=False, bias=True).reshape(len(mean), len(mean))
    shrink = lam / (1 + lam)
    u = lam * gamma + shrink * np.outer(g_bar, g_bar)
    v = covariance + lam * c + shrink * np.outer(mean - z_bar, mean - z_bar)
    chol = np.linalg.cholesky(v)
    w, vectors = np.linalg.eigh(chol.T @ u @ chol)
    root = vectors * (2 / (1 + np.sqrt(1 + 4 * np.clip(w, 0, None))))
    covariance = chol @ root @ vectors.T @ chol.T
    covariance = (covariance + covariance.T) / 2
    mean = mean / (1 + lam) + shrink * (covariance @ g_bar + z_bar)
    return mean, covariance


def _result(problem, mean, covariance, losses, start, steps, batch_size, lambda_0, decay, seed, density, started):
    info = {"batch_size": batch_size, "steps": steps, "learning_rate": lambda_0, "decay": decay, "seed": seed,
            "dtype": str(density.dtype).removeprefix("torch."), "start": started}
    return gaussian_result(problem, mean, covariance, method="batch-match", losses=losses,
                           seconds=time.perf_counter() - start, info=info,
                           grad_evals=batch_size * steps + started["grad_evals"])
