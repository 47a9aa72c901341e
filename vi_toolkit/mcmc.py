"""``run_mcmc``: Pyro's NUTS as the baseline, with ArviZ output and diagnostics in the same form as VI's.

Two ways to make it faster than plain Pyro NUTS, both keeping NUTS exact:

- ``init=result`` starts every chain from a draw of a posterior result of the same model (a VI fit,
  Pathfinder, an earlier run) and fixes the inverse mass matrix to the covariance of its draws in NUTS's
  unconstrained space, so warm-up only has to adapt the step size (a much shorter ``warmup`` suffices). A poor
  approximation only costs efficiency, never correctness.
- ``parallel=True`` runs the chains in worker processes (:mod:`vi_toolkit.workers`: one chain per worker, up to
  the number of cores, one torch thread each), each from the same seed as in a sequential run, so the draws are
  the same. The workers never import the caller's ``__main__`` (no ``if __name__ == "__main__":`` guard is
  needed) and the model and data travel pickled by cloudpickle, so models defined in a script, a notebook or
  ``python -c`` run in parallel too. What does not pickle, or a pool that fails, runs sequentially.

Every chain runs on its own random stream and thread count (:func:`vi_toolkit.isolation.isolated`): the
caller's torch, numpy and Python random streams and torch's thread count are as they were after the call.
"""

import time
import warnings
from dataclasses import dataclass

import numpy as np
import pyro.poutine as poutine
import torch
from pyro.infer import MCMC, NUTS, Predictive
from pyro.infer.autoguide.initialization import init_to_value
from pyro.infer.mcmc.adaptation import BlockMassMatrix
from torch.distributions import biject_to

from . import workers
from .errors import ConfigError, ModelGuideError
from .isolation import isolated
from .posterior import check_posterior, stored_draws
from .problem import Problem
from .traces import is_latent
from .validate import between, whole
from .validate import seed as check_seed

STATS = ("lp", "energy", "tree_depth", "step_size", "acceptance_rate")  # per-draw statistics of RecordingNUTS


class RecordingNUTS(NUTS):
    """Pyro's NUTS, unchanged, recording the statistics of every transition (Pyro keeps running means only).

    Per transition, in ``self.stats`` (name -> list, warm-up included):

    - ``lp``: log density of the new state, -U(z) (in NUTS's unconstrained space, Jacobians included);
    - ``energy``: the Hamiltonian U(z) + K(r) at the start of the transition, after the momentum is drawn.
      Along a trajectory the Hamiltonian is conserved up to integration error, so this is (up to that error)
      Stan's ``energy__`` of the transition; its marginal and transitions are what ``az.plot_energy`` and
      ``az.bfmi`` read;
    - ``tree_depth``: the number of tree doublings (Stan's ``treedepth__``; 2^depth - 1 leapfrog steps at most);
    - ``step_size``: the step size used by the transition;
    - ``acceptance_rate``: the mean Metropolis acceptance probability over the trajectory's proposals (what
      step-size adaptation targets; Pyro's ``accept_prob``);
    - ``diverging``: whether a subtree diverged.

    ``self.leapfrog_steps`` counts the leapfrog steps (gradient evaluations) of every transition, warm-up included.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.stats = {name: [] for name in STATS + ("diverging",)}
        self._depth = 0  # recursion depth inside _build_tree
        self._transition = None
        self.leapfrog_steps = 0

    def _build_tree(self, z, r, z_grads, log_slice, direction, tree_depth, energy_current):
        top = self._depth == 0
        self._depth += 1
        try:
            tree = super()._build_tree(z, r, z_grads, log_slice, direction, tree_depth, energy_current)
        finally:
            self._depth -= 1
        if top and self._transition is not None:
            record = self._transition
            if record["energy"] is None:
                record["energy"] = float(energy_current)
            record["tree_depth"] += 1
            record["sum_accept"] += float(tree.sum_accept_probs)
            record["proposals"] += int(tree.num_proposals)
            record["diverging"] = record["diverging"] or bool(tree.diverging)
        return tree

    def sample(self, params):
        record = {"energy": None, "tree_depth": 0, "sum_accept": 0.0, "proposals": 0, "diverging": False}
        step_size = float(self.step_size)
        self._transition = record
        try:
            z = super().sample(params)
        finally:
            self._transition = None
        _, potential_energy, _ = self._fetch_from_cache()
        lp = -float(potential_energy) if potential_energy is not None else float("nan")
        stats = self.stats
        stats["lp"].append(lp)
        stats["energy"].append(-lp if record["energy"] is None else record["energy"])
        stats["tree_depth"].append(record["tree_depth"])
        stats["step_size"].append(step_size)
        stats["acceptance_rate"].append(record["sum_accept"] / record["proposals"] if record["proposals"] else 1.0)
        stats["diverging"].append(record["diverging"])
        self.leapfrog_steps += record["proposals"]
        return z


class MCMCResult:
    """NUTS draws of every latent and ``pyro.deterministic`` site, chain by chain, with divergences and timing.
    Implements the posterior protocol (:class:`vi_toolkit.posterior.Posterior`)."""

    losses = None  # no optimization trace

    def __init__(self, *, chains, seconds, divergences, info, sample_stats=None, problem=None):
        self.chains = chains  # site -> numpy array (chains, draws, *site_shape)
        self.seconds = float(seconds)
        self.diverging = np.asarray(divergences, dtype=bool)  # (chains, draws)
        self.info = {"method": "nuts", **info}
        # per-draw NUTS statistics: name -> array (chains, draws) (lp, energy, tree_depth, step_size,
        # acceptance_rate); None for a result made from draws alone
        self.sample_stats = sample_stats
        self.problem = problem  # the model and data (for log_likelihood and posterior_predictive), or None

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

    def draws(self, n=None, seed=0):
        """site -> numpy array (n, *site_shape). ``n=None``: every draw, chains stacked in order; else ``n``
        draws chosen with ``seed`` (without replacement up to the number stored, a bootstrap beyond)."""
        every = {name: value.reshape((-1,) + value.shape[2:]) for name, value in self.chains.items()}
        return every if n is None else stored_draws(every, n, seed)

    def to_inference_data(self, n=None, seed=0, predictive=None):
        """ArviZ InferenceData: every chain (``n=None``), or the ``n`` draws of ``draws(n, seed)`` as one chain.

        Groups: ``posterior``; ``sample_stats`` (per draw and chain: ``diverging``, and for a run of
        :func:`run_mcmc` also ``lp``, ``energy``, ``tree_depth``, ``step_size``, ``acceptance_rate``, see
        :class:`RecordingNUTS`); and where the model and data are known, ``log_likelihood`` (pointwise, per
        observed site), ``observed_data`` and ``posterior_predictive`` (one replicate of each observed site per
        draw, on the stream ``seed``; ``predictive``: True/False forces or leaves out these three groups, None
        leaves them out only when very large); see :func:`vi_toolkit.inference_data.predictive_groups`."""
        from .inference_data import from_chains, predictive_groups

        attrs = {"method": "nuts", "jit": str(self.info.get("jit"))}
        stats = {"diverging": self.diverging, **(self.sample_stats or {})}
        if n is None:
            chains = self.chains
        else:
            keys = {name: object() for name in stats}
            flat = {**self.draws(), **{keys[name]: np.asarray(v).reshape(-1) for name, v in stats.items()}}
            subset = stored_draws(flat, n, seed)
            stats = {name: subset.pop(keys[name])[None] for name in stats}
            chains = {name: value[None] for name, value in subset.items()}
        groups = {}
        if self.problem is not None:
            with self.problem.isolated(seed, params={"params": {}, "constraints": {}}):
                groups = predictive_groups(self.problem, chains, predictive=predictive)
        return from_chains(chains, sample_stats=stats, attrs=attrs, **groups)

    def log_weights(self, n=1000, seed=0):
        """None: MCMC draws have no density to weight them with."""
        return None

    def summary(self):
        """pandas table per parameter: mean, sd, r_hat, ess_bulk, ess_tail."""
        import arviz as az

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
                f"init's latent sites {list(self._start.sites)} are not NUTS's {list(mass_matrix_shape)}; "
                "start NUTS from a result of the same model"
            )
        self.inverse_mass_matrix = {self._start.sites: self._start.inverse_mass.to(**options)}


def start_from(result, model, args, kwargs, chains, seed=0, mass="dense", num_draws=4000):
    """NUTS's start from a posterior result (:class:`vi_toolkit.posterior.Posterior`: a VI fit, Pathfinder, an
    earlier run) of the model: chain c starts at draw c of ``result.draws(n, seed)``, and the inverse mass matrix
    is the covariance Sigma of those n = max(``num_draws``, chains) draws z = T^-1(theta) of the model's latent
    sites in unconstrained space (its diagonal if ``mass="diag"``), shrunk as in Stan:
    n/(n+5) Sigma + 1e-3 * 5/(n+5) I."""
    check_posterior(result, "init")
    if mass not in ("dense", "diag"):
        raise ConfigError(f"init_mass must be 'dense' or 'diag', got {mass!r}")
    with isolated(seed), torch.no_grad():
        trace = poutine.trace(model).get_trace(*args, **kwargs)
    sites = tuple(sorted(name for name, site in trace.nodes.items() if is_latent(site)))
    n = max(num_draws, chains)
    draws = {name: torch.as_tensor(value) for name, value in result.draws(n, seed).items()}
    missing = [s for s in sites if s not in draws]
    if missing:
        raise ModelGuideError(
            f"init has no draws of the model's latent site(s) {missing} (it has {sorted(draws)}); start from a "
            "result of the same model"
        )
    flat = torch.cat(
        [biject_to(trace.nodes[s]["fn"].support).inv(draws[s]).reshape(n, -1).double() for s in sites], dim=1
    )
    centred = flat - flat.mean(0)
    cov = centred.T @ centred / (n - 1)
    shrunk = n / (n + 5.0) * cov + 1e-3 * 5.0 / (n + 5.0) * torch.eye(cov.shape[0], dtype=cov.dtype)
    inverse_mass = shrunk if mass == "dense" else shrunk.diagonal().clone()
    values = [{s: draws[s][c].to(torch.get_default_dtype()) for s in sites} for c in range(chains)]
    return Start(values, inverse_mass.to(torch.get_default_dtype()), sites)



def _deterministic(model, args, kwargs, samples, shapes):
    """The model's ``pyro.deterministic`` sites (``shapes``: site -> value shape) at each draw, since NUTS records
    the latent sites only, so that MCMC draws carry the same sites as VI draws: site -> tensor (draws, *shape).
    (Predictive gives a scalar site as (draws, 1): each is reshaped to its shape in one trace.)"""
    if not shapes:
        return {}
    n = len(next(iter(samples.values())))
    with torch.no_grad():
        found = Predictive(model, posterior_samples=samples, return_sites=list(shapes))(*args, **kwargs)
    return {name: found[name].reshape((n,) + tuple(shape)) for name, shape in shapes.items()}


def _chain(model, args, kwargs, draws, warmup, seed, progress, jit, target_accept, start, deterministic, threads):
    """One NUTS chain on the random stream ``seed`` with ``threads`` intra-op threads (None: the caller's); the
    caller's stream and thread count are put back. Returns (site -> numpy draws, divergence flags, per-draw
    statistics name -> numpy array (draws,), see :class:`RecordingNUTS`, leapfrog steps of warm-up and
    sampling, divergent transitions during warm-up): plain numbers, so they travel back from a worker process
    with the draws."""
    steps = [0]

    def hook(kernel, params, stage, i):  # progress, for a parent that shows the chains of its workers
        steps[0] += 1
        workers.report(steps[0], warmup + draws)

    with isolated(seed, threads=threads):
        options = {}
        if start is not None:  # start values and a fixed mass matrix from init; warm-up adapts the step size only
            options = {"init_strategy": init_to_value(values=start[0]), "adapt_mass_matrix": False,
                       "full_mass": start[1].dense}
        kernel = RecordingNUTS(model, jit_compile=jit, ignore_jit_warnings=True, target_accept_prob=target_accept, **options)
        if start is not None:
            kernel.mass_matrix_adapter = _MassFrom(start[1])
        mcmc = MCMC(kernel, num_samples=draws, warmup_steps=warmup, num_chains=1, disable_progbar=not progress,
                    hook_fn=hook)
        with warnings.catch_warnings():
            if jit:
                warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
                warnings.filterwarnings("ignore", message=r".*torch\.jit\.trace. is deprecated", category=FutureWarning)
            mcmc.run(*args, **kwargs)
        samples = mcmc.get_samples()
        samples = {**samples, **_deterministic(model, args, kwargs, samples, deterministic)}
        diverging = np.zeros(draws, dtype=bool)
        diverging[list(mcmc.diagnostics()["divergences"]["chain 0"])] = True
        dtypes = {"tree_depth": np.int64}
        stats = {name: np.asarray(kernel.stats[name][-draws:], dtype=dtypes.get(name, np.float64))
                 for name in STATS}
        warmup_divergences = int(sum(kernel.stats["diverging"][:warmup]))
    return ({name: value.detach().numpy() for name, value in samples.items()}, diverging, stats, kernel.leapfrog_steps,
            warmup_divergences)


def _in_workers(tasks, progress):
    """The chains ``tasks`` in worker processes, one torch thread each; WorkerError if the pool cannot run them."""
    bars = []
    if progress:
        from tqdm.auto import tqdm

        bars = [tqdm(total=task[3] + task[4], desc=f"chain {i}", position=i, leave=True, dynamic_ncols=True)
                for i, task in enumerate(tasks)]

    def on_progress(i, done, total):
        if bars:
            bars[i].update(done - bars[i].n)

    try:
        return workers.run([(_chain, task, {}) for task in tasks], workers=workers.cores(),
                           preload=("vi_toolkit.mcmc",), on_progress=on_progress)
    finally:
        for bar in bars:
            bar.close()


def _sequential_because(parallel, chains):
    """Why the chains run one after another, or None if they can run in worker processes."""
    if not parallel:
        return "parallel=False"
    if chains < 2:
        return "one chain"
    return workers.unavailable()


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
    """Sample the posterior of ``model`` given ``*args, **model_kwargs`` (or a :class:`~vi_toolkit.Problem`)
    with NUTS.

    Each chain runs from its own seed (``numpy.random.SeedSequence(seed).spawn``) on a private random stream: the
    caller's random streams and torch thread count are untouched. Small models run on one torch thread, large
    ones on torch's default (the :class:`~vi_toolkit.Problem`'s thread policy). ``jit=True`` compiles the
    potential energy with ``torch.jit`` and falls back to the plain one if the model does not trace.

    - ``init``: a posterior result of the same model and data (a :class:`~vi_toolkit.VIResult`, a
      :func:`~vi_toolkit.pathfinder` result, an earlier run). Chain c starts at its draw c and the inverse mass
      matrix is fixed to its draws' covariance in unconstrained space (``init_mass="dense"``) or its diagonal
      (``"diag"``); warm-up then only adapts the step size, so a short ``warmup`` (100-300) suffices where the
      approximation is close. ``info["init"]`` names its method (and guide).
    - ``info["grad_evals"]``: the leapfrog steps (gradient evaluations) of all transitions, warm-up included,
      summed over chains; ``info["warmup_divergences"]``: the divergent transitions during warm-up, summed over
      chains (``divergences`` counts those after it, the draws').
    - ``parallel``: run the chains in worker processes (one torch thread each) when there are several chains
      and cores and this is not itself a worker; they never re-run the calling script, and the model and data
      travel by cloudpickle. Models or data that do not pickle, or a worker that fails, run sequentially
      instead (``info["sequential_because"]`` says why). The workers are kept for later calls; each pays the
      import of torch and Pyro once (a few seconds), so this pays off for chains that take longer than that.
      The draws are those of a sequential run with the same seed (up to floating-point summation order where a
      sequential run uses more torch threads on large tensors). ``info["parallel"]`` says what ran.
    """
    _check_counts(draws, warmup, chains)
    seed = check_seed(seed)
    target_accept = between("target_accept", target_accept, 0, 1)
    if init_mass not in ("dense", "diag"):
        raise ConfigError(f"init_mass must be 'dense' or 'diag', got {init_mass!r}")
    t0 = time.perf_counter()
    problem = Problem.of(model, *args, **model_kwargs)
    model, args, kwargs = problem.model, problem.args, problem.kwargs
    seeds = [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(chains)]
    starts = [None] * chains
    if init is not None:
        found = start_from(init, model, args, kwargs, chains, seed=seed, mass=init_mass)
        starts = [(values, found) for values in found.values]
    because = _sequential_because(parallel, chains)

    def sample(compiled):
        nonlocal because

        def tasks(in_workers):
            return [
                (model, args, kwargs, draws, warmup, s, progress and not in_workers, compiled, target_accept, st,
                 problem.deterministic_shapes, 1 if in_workers else problem.threads)
                for s, st in zip(seeds, starts)
            ]

        if because is None:
            try:
                return _in_workers(tasks(True), progress)
            except workers.WorkerError as exc:
                because = str(exc)
        return [_chain(*task) for task in tasks(False)]

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
    stacked = {name: np.stack([chain[0][name] for chain in per_chain]) for name in per_chain[0][0]}
    diverging = np.stack([chain[1] for chain in per_chain])
    sample_stats = {name: np.stack([chain[2][name] for chain in per_chain]) for name in STATS}
    info = {
        "method": "nuts",
        "draws": draws,
        "warmup": warmup,
        "chains": chains,
        "seed": seed,
        "jit": jit,
        "target_accept": target_accept,
        "parallel": because is None,
        "init": None if init is None else {"method": init.info.get("method"), "guide": init.info.get("guide"),
                                           "mass": init_mass},
        "grad_evals": int(sum(chain[3] for chain in per_chain)),  # leapfrog steps, warm-up included, all chains
        "warmup_divergences": int(sum(chain[4] for chain in per_chain)),
    }
    if because is not None:
        info["sequential_because"] = because
    return MCMCResult(chains=stacked, seconds=seconds, divergences=diverging, info=info, sample_stats=sample_stats,
                      problem=problem)
