"""``run_mcmc``: Pyro's NUTS as the baseline, with ArviZ output and diagnostics in the same form as VI's."""

import time
import warnings

import arviz as az
import numpy as np
import pyro
import torch
from pyro.infer import MCMC, NUTS

from .errors import ConfigError, ModelGuideError
from .inference_data import from_chains


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
        table = az.summary(self.to_inference_data(), kind="all")
        return table[["mean", "sd", "r_hat", "ess_bulk", "ess_tail"]]

    def save(self, folder):
        from .results import save_result

        return save_result(self, folder)


def _check_counts(draws, warmup, chains):
    for name, value, low in (("draws", draws, 1), ("warmup", warmup, 0), ("chains", chains, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ConfigError(f"{name} must be a whole number >= {low}, got {value!r}")


def _run_chain(model, args, kwargs, draws, warmup, seed, progress, jit, target_accept):
    pyro.set_rng_seed(seed)
    kernel = NUTS(model, jit_compile=jit, ignore_jit_warnings=True, target_accept_prob=target_accept)
    mcmc = MCMC(kernel, num_samples=draws, warmup_steps=warmup, num_chains=1, disable_progbar=not progress)
    with warnings.catch_warnings():
        if jit:
            warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        mcmc.run(*args, **kwargs)
    samples = {name: value.detach().numpy() for name, value in mcmc.get_samples().items()}
    diverging = np.zeros(draws, dtype=bool)
    diverging[list(mcmc.diagnostics()["divergences"]["chain 0"])] = True
    return samples, diverging


def run_mcmc(
    model, *args, draws=1000, warmup=1000, chains=2, seed=0, progress=True, jit=True, target_accept=0.8, **model_kwargs
):
    """Sample the posterior of ``model`` given ``*args, **model_kwargs`` with NUTS.

    Chains run one after another, each from its own seed (``numpy.random.SeedSequence(seed).spawn``).
    ``jit=True`` compiles the potential energy with ``torch.jit`` and falls back to the plain one if the model
    does not trace.
    """
    _check_counts(draws, warmup, chains)
    seeds = [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(chains)]

    def sample(compiled):
        return [
            _run_chain(model, args, model_kwargs, draws, warmup, s, progress, compiled, target_accept) for s in seeds
        ]

    start = time.perf_counter()
    try:
        try:
            per_chain = sample(jit)
        except (RuntimeError, ValueError, TypeError):
            if not jit:
                raise
            jit = False  # the model does not trace: every chain runs uncompiled
            start = time.perf_counter()
            per_chain = sample(False)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise ModelGuideError(f"NUTS failed on the model: {type(exc).__name__}: {exc}") from exc
    seconds = time.perf_counter() - start
    stacked = {name: np.stack([samples[name] for samples, _ in per_chain]) for name in per_chain[0][0]}
    diverging = np.stack([d for _, d in per_chain])
    info = {"draws": draws, "warmup": warmup, "chains": chains, "seed": seed, "jit": jit, "target_accept": target_accept}
    return MCMCResult(chains=stacked, seconds=seconds, divergences=diverging, info=info)
