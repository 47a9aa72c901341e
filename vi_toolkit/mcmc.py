"""``run_mcmc``: Pyro's NUTS as the baseline, with ArviZ output and diagnostics in the same form as VI's.

Two ways to make it faster than plain Pyro NUTS, both keeping NUTS exact:

- ``init=vi_result`` starts every chain from a draw of a VI fit and fixes the inverse mass matrix to the
  covariance of the VI draws in NUTS's unconstrained space, so warm-up only has to adapt the step size
  (a much shorter ``warmup`` suffices). A poor fit only costs efficiency, never correctness.
- ``parallel=True`` runs the chains in spawned worker processes (one chain per process, up to the number of
  cores), each from the same seed as in a sequential run, so the draws are the same. Spawned workers import
  the model afresh: it must be picklable (a module-level function, or a method of an object of a class
  defined in an importable module, such as the pairs in ``models``), and a script that calls ``run_mcmc``
  must guard its top level with ``if __name__ == "__main__":``. Anything else runs sequentially.
  ("fork" is not used: a forked child of a process that has run torch's OpenMP threads can hang.)
"""

import multiprocessing
import os
import pickle
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import arviz as az
import numpy as np
import pyro
import pyro.poutine as poutine
import torch
from pyro.infer import MCMC, NUTS, Predictive
from pyro.infer.autoguide.initialization import init_to_value
from pyro.infer.mcmc.adaptation import BlockMassMatrix
from torch.distributions import biject_to

from .errors import ConfigError, ModelGuideError
from .inference_data import from_chains
from .validate import whole


class MCMCResult:
    """NUTS draws of every latent site, chain by chain, with divergences and timing."""

    kind = "mcmc"

    def __init__(self, *, chains, seconds, divergences, info):
        self.chains = chains  # site -> numpy array (chains, draws, *site_shape)
        self.seconds = float(seconds)
        self.diverging = divergences  # numpy bool array (chains, draws)
        self.info = info

    def __repr__(self):
        first = next(iter(self.chains.values()))
        return (
            f"MCMCResult(chains={first.shape[0]}, draws={first.shape[1]}, divergences={self.divergences}, "
            f"seconds={self.seconds:.2f})"
        )

    @property
    def divergences(self):
        """Number of divergent transitions after warm-up, over all chains."""
        return int(self.diverging.sum())

    def draws(self):
        """site -> numpy array (chains * draws, *site_shape), chains stacked in order."""
        return {name: value.reshape((-1,) + value.shape[2:]) for name, value in self.chains.items()}

    def to_inference_data(self):
        return from_chains(
            self.chains,
            sample_stats={"diverging": self.diverging},
            attrs={"method": "nuts", "jit": str(self.info.get("jit"))},
        )

    def summary(self):
        """pandas table per parameter: mean, sd, r_hat, ess_bulk, ess_tail."""
        table = az.summary(self.to_inference_data(), kind="all", round_to="none")
        return table[["mean", "sd", "r_hat", "ess_bulk", "ess_tail"]]

    def save(self, folder):
        from .results import save_result

        return save_result(self, folder)


def _check_counts(draws, warmup, chains):
    for name, value, low in (("draws", draws, 1), ("warmup", warmup, 0), ("chains", chains, 1)):
        whole(name, value, low)


@dataclass(frozen=True)
class Start:
    """Where NUTS starts: initial values per chain (site -> constrained tensor) and the inverse mass matrix
    (a covariance over the sorted sites' flattened unconstrained coordinates; (K,) if diagonal, (K, K) if dense)."""

    values: list
    inverse_mass: torch.Tensor
    sites: tuple

    @property
    def dense(self):
        return self.inverse_mass.dim() == 2


class _MassFrom(BlockMassMatrix):
    """Pyro's block mass matrix, configured with a given inverse mass matrix instead of the identity."""

    def __init__(self, start):
        super().__init__()
        self._start = start

    def configure(self, mass_matrix_shape, adapt_mass_matrix=True, options={}):
        super().configure(mass_matrix_shape, adapt_mass_matrix, options)
        if list(mass_matrix_shape) != [self._start.sites]:
            raise ModelGuideError(
                f"the VI fit's latent sites {list(self._start.sites)} are not NUTS's {list(mass_matrix_shape)}; "
                "start NUTS from a fit of the same model"
            )
        self.inverse_mass_matrix = {self._start.sites: self._start.inverse_mass.to(**options)}


def start_from_vi(vi_result, model, args, kwargs, chains, seed=0, mass="dense", num_draws=4000):
    """NUTS's start from a VI fit: chain c starts at VI draw c, and the inverse mass matrix is the covariance
    Sigma of ``num_draws`` VI draws z = T^-1(theta) in unconstrained space (its diagonal if ``mass="diag"``),
    shrunk as in Stan: n/(n+5) Sigma + 1e-3 * 5/(n+5) I."""
    if getattr(vi_result, "kind", None) != "vi" or not hasattr(vi_result, "structure"):
        raise ConfigError(f"init must be a VIResult from vt.fit_vi, got {type(vi_result).__name__}")
    if mass not in ("dense", "diag"):
        raise ConfigError(f"init_mass must be 'dense' or 'diag', got {mass!r}")
    sites = tuple(sorted(vi_result.structure.latent_shapes))
    n = max(num_draws, chains)
    draws = {name: torch.as_tensor(value) for name, value in vi_result.draws(n, seed).items()}
    with torch.no_grad():
        trace = poutine.trace(model).get_trace(*args, **kwargs)
    missing = [s for s in sites if s not in trace.nodes]
    if missing:
        raise ModelGuideError(f"the VI fit has latent site(s) {missing} that this model lacks; init from a fit of the same model")
    flat = torch.cat(
        [biject_to(trace.nodes[s]["fn"].support).inv(draws[s]).reshape(n, -1).double() for s in sites], dim=1
    )
    centred = flat - flat.mean(0)
    cov = centred.T @ centred / (n - 1)
    shrunk = n / (n + 5.0) * cov + 1e-3 * 5.0 / (n + 5.0) * torch.eye(cov.shape[0], dtype=cov.dtype)
    inverse_mass = shrunk if mass == "dense" else shrunk.diagonal().clone()
    values = [{s: draws[s][c].to(torch.get_default_dtype()) for s in sites} for c in range(chains)]
    return Start(values, inverse_mass.to(torch.get_default_dtype()), sites)


def _deterministic(model, args, kwargs, samples):
    """The model's ``pyro.deterministic`` sites at each draw (NUTS records the latent sites only), so that MCMC
    draws carry the same sites as VI draws: site -> tensor (draws, *shape)."""
    trace = poutine.trace(model).get_trace(*args, **kwargs)
    names = [name for name, site in trace.nodes.items()
             if site["type"] == "sample" and site["infer"].get("_deterministic")]
    if not names:
        return {}
    with torch.no_grad():
        return Predictive(model, posterior_samples=samples, return_sites=names)(*args, **kwargs)


def _run_chain(model, args, kwargs, draws, warmup, seed, progress, jit, target_accept, start=None):
    pyro.set_rng_seed(seed)
    options = {}
    if start is not None:  # start values and a fixed mass matrix from VI; warm-up adapts the step size only
        options = {"init_strategy": init_to_value(values=start[0]), "adapt_mass_matrix": False,
                   "full_mass": start[1].dense}
    kernel = NUTS(model, jit_compile=jit, ignore_jit_warnings=True, target_accept_prob=target_accept, **options)
    if start is not None:
        kernel.mass_matrix_adapter = _MassFrom(start[1])
    mcmc = MCMC(kernel, num_samples=draws, warmup_steps=warmup, num_chains=1, disable_progbar=not progress)
    with warnings.catch_warnings():
        if jit:
            warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.trace. is deprecated", category=FutureWarning)
        mcmc.run(*args, **kwargs)
    samples = mcmc.get_samples()
    samples = {**samples, **_deterministic(model, args, kwargs, samples)}
    samples = {name: value.detach().numpy() for name, value in samples.items()}
    diverging = np.zeros(draws, dtype=bool)
    diverging[list(mcmc.diagnostics()["divergences"]["chain 0"])] = True
    return samples, diverging


def _chain_in_process(task, threads):
    """Worker: one chain with ``threads`` torch threads; a failure of the model comes back as a value."""
    torch.set_num_threads(threads)
    try:
        return True, _run_chain(*task)
    except Exception as exc:  # noqa: BLE001 - re-raised in the parent, which decides what it means
        return False, exc


def _picklable(obj):
    try:
        pickle.dumps(obj)
        return True
    except Exception:  # noqa: BLE001 - lambdas, closures, locally defined classes, open handles ...
        return False


_POOL = {}  # the spawned worker pool, kept between calls so that each worker imports torch and Pyro once


def _pool(workers):
    pool = _POOL.get(workers)
    if pool is None:
        pool = _POOL[workers] = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    return pool


def _in_processes(tasks):
    """Run ``tasks`` in spawned processes; None if the pool itself failed (the caller then runs them in turn)."""
    workers = min(len(tasks), os.cpu_count() or 1)
    threads = max(1, torch.get_num_threads() // workers)
    try:
        outcomes = list(_pool(workers).map(_chain_in_process, tasks, [threads] * len(tasks)))
    except Exception:  # noqa: BLE001 - a broken pool, or a model that does not unpickle in a fresh process
        _POOL.pop(workers).shutdown(wait=False, cancel_futures=True)
        return None
    for ok, value in outcomes:
        if not ok:
            raise value
    return [value for _, value in outcomes]


def _can_spawn(chains, tasks):
    return (
        chains > 1
        and (os.cpu_count() or 1) > 1
        and multiprocessing.parent_process() is None  # never from inside a worker
        and _picklable(tasks)
    )


def run_mcmc(
    model,
    *args,
    draws=1000,
    warmup=1000,
    chains=2,
    seed=0,
    progress=True,
    jit=True,
    target_accept=0.8,
    init=None,
    init_mass="dense",
    parallel=True,
    **model_kwargs,
):
    """Sample the posterior of ``model`` given ``*args, **model_kwargs`` with NUTS.

    Each chain runs from its own seed (``numpy.random.SeedSequence(seed).spawn``). ``jit=True`` compiles the
    potential energy with ``torch.jit`` and falls back to the plain one if the model does not trace.

    - ``init``: a :class:`~vi_toolkit.VIResult` of the same model and data. Chain c starts at VI draw c and the
      inverse mass matrix is fixed to the VI draws' covariance in unconstrained space (``init_mass="dense"``)
      or its diagonal (``"diag"``); warm-up then only adapts the step size, so a short ``warmup`` (100-300)
      suffices where the fit is close.
    - ``parallel``: run the chains in spawned processes (torch threads shared out among them), when the
      model and data pickle and there are several chains and cores; otherwise, or if the pool fails, they
      run one after another. The worker processes are kept for later calls; each pays the import of torch
      and Pyro once (a few seconds), so this pays off for chains that take longer than that. The draws are those of a sequential run with the same
      seed (up to floating-point summation order where a sequential run uses more torch threads on large
      tensors). Progress bars are shown only for sequential chains. ``info["parallel"]`` says what ran.
    """
    _check_counts(draws, warmup, chains)
    seeds = [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(chains)]
    t0 = time.perf_counter()
    starts = [None] * chains
    if init is not None:
        found = start_from_vi(init, model, args, model_kwargs, chains, seed=seed, mass=init_mass)
        starts = [(values, found) for values in found.values]
    in_processes = bool(parallel) and _can_spawn(chains, (model, args, model_kwargs, starts))

    def sample(compiled):
        nonlocal in_processes
        tasks = [
            (model, args, model_kwargs, draws, warmup, s, progress and not in_processes, compiled, target_accept, st)
            for s, st in zip(seeds, starts)
        ]
        if in_processes:
            per_chain = _in_processes(tasks)
            if per_chain is not None:
                return per_chain
            in_processes = False
        return [_run_chain(*task) for task in tasks]

    try:
        try:
            per_chain = sample(jit)
        except (RuntimeError, ValueError, TypeError):
            if not jit:
                raise
            jit = False  # the model does not trace: every chain runs uncompiled
            t0 = time.perf_counter()
            per_chain = sample(False)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise ModelGuideError(f"NUTS failed on the model: {type(exc).__name__}: {exc}") from exc
    seconds = time.perf_counter() - t0
    stacked = {name: np.stack([samples[name] for samples, _ in per_chain]) for name in per_chain[0][0]}
    diverging = np.stack([d for _, d in per_chain])
    info = {
        "draws": draws,
        "warmup": warmup,
        "chains": chains,
        "seed": seed,
        "jit": jit,
        "target_accept": target_accept,
        "parallel": in_processes,
        "init": None if init is None else {"guide": init.info.get("guide"), "mass": init_mass},
    }
    return MCMCResult(chains=stacked, seconds=seconds, divergences=diverging, info=info)
