"""SVI as an explicit unit of work, in the spirit of BlackJAX's ``init``/``step``.

``init(model, guide, *data, **settings)`` validates the problem and the pair once and returns a
:class:`FitState`: the guide's parameters, the ELBO, Adam, the step-size schedule, the losses, the clock and a
private random stream. ``step(state)`` advances it by one SVI step and returns the loss; ``state.done`` says
when the schedule has finished; ``state.result()`` is the :class:`~vi_toolkit.VIResult`. ``fit_vi`` is a
loop over these two, so a loop of your own (with a callback every N steps, say) reproduces it exactly::

    state = vt.svi.init(model, "normal", y, seed=0)
    while not state.done:
        loss = vt.svi.step(state)
        if state.steps_run % 500 == 0:
            print(state.steps_run, loss)
    result = state.result()

Each step is Pyro's ``SVI.step`` (``loss_and_grads``, then the optimizer on the captured parameters: by default
one fused Adam, or the ``optim=`` of :func:`vi_toolkit.fit_vi`; :mod:`vi_toolkit.adam`) with two additions: gradients are checked for NaN/inf *before* the update,
so the last good parameters survive a numerical failure, and the step size follows
:mod:`vi_toolkit.schedule`, which also decides when to stop. A step runs inside
:func:`vi_toolkit.isolation.isolated`: on the fit's own stream, parameters and thread count, with Pyro's
validation on for the first step only; the caller's state is untouched between steps.
"""

import copy
import hashlib
import dataclasses
import inspect
import math
import os
import time
import warnings
from dataclasses import asdict

import pyro
import pyro.poutine as poutine
import torch
from pyro.infer import ELBO
from pyro.infer.autoguide import AutoGuide

from . import traces
from .adam import check as check_optim
from .adam import describe as describe_optim
from .adam import make_optimizer
from .checkpoint import plain
from .errors import ConfigError, ModelGuideError, NumericalError, VIToolkitError
from .guides import AUTOGUIDES, make_guide
from .isolation import _LOCK as _SOURCE_LOCK
from .isolation import Stream
from .objectives import OBJECTIVES, as_objective, make_elbo
from .problem import Problem, content_hash
from .schedule import Schedule, ScheduleState
from .validate import positive, seed as check_seed, whole
from .vi_result import VIResult

# Settings of Pyro's and NumPyro's own APIs that users pass by habit: they would reach the model as data.
_FOREIGN_SETTINGS = {
    "num_samples": "fit_vi's steps= (optimization) or result.draws(n) (posterior draws)",
    "num_steps": "steps=",
    "optimizer": "optim= (a torch optimizer class, (class, options) or a Pyro optimizer) and lr=",
    "loss": "objective=",
    "warmup_steps": "run_mcmc(warmup=...)",
    "num_warmup": "run_mcmc(warmup=...)",
    "rng_key": "seed=",
}


class FitState:
    """A fit in progress. Advance it with :func:`step`; read ``losses``, ``steps_run``, ``done``, ``lr`` (the
    current step size), ``seconds`` (time spent in ``init`` and ``step``); ``result()`` is the fit so far."""

    def __init__(self, problem, guide, structure, vectorized, elbo, settings, info, params, optim=None):
        self.problem, self.guide, self.structure, self.vectorized = problem, guide, structure, vectorized
        self.elbo = elbo
        self.settings = settings  # what identifies the fit (a checkpoint must match it)
        self.info = info
        self.params = params  # the fit's own parameter-store state
        schedule = Schedule(**settings["schedule"])
        self.base_lr = settings["lr"]
        self.lr = self.base_lr
        # optim=None: Adam, with the full second-moment matrix for a small hand-written guide
        self.optim = make_optimizer(optim, self.base_lr, schedule.betas, full_matrix=not isinstance(guide, AutoGuide))
        self.plan = ScheduleState(schedule, settings["steps"], settings["max_seconds"])
        self.stream = Stream(settings["seed"])  # the training stream starts after set-up, whatever it consumed
        self.losses = []
        self.done = False
        self.seconds = 0.0
        self.window_params = None  # the parameters at the end of the last window (see _still_improving)

    @property
    def steps_run(self):
        return len(self.losses)

    def result(self):
        """The fit so far as a :class:`VIResult` (its parameters are this state's: later steps move them)."""
        guide = self.guide
        if self.info["guide"] == "laplace" and self.done:
            with self.problem.isolated(params=self.params):
                guide = guide.laplace_approximation(*self.problem.args, **self.problem.kwargs)
        info = {**self.info, "steps_run": self.steps_run, "stopped_early": self.steps_run < self.settings["steps"],
                "decay_start": self.plan.decay_start,
                "grad_evals": self.info["start"]["grad_evals"] + self.steps_run * self.settings["num_particles"]}
        return VIResult(problem=self.problem, guide=guide, structure=self.structure, vectorized=self.vectorized,
                        param_state=self.params, losses=self.losses, seconds=self.seconds, info=info)

    def state_dict(self):
        """Everything a resumed fit needs, as tensors, numbers and strings only (loadable with
        ``torch.load(weights_only=True)``): parameters by name (unconstrained), Adam, schedule, losses, clock
        and random stream."""
        with self.problem.isolated(params=self.params):
            store = pyro.get_param_store()
            params = {name: store[name].unconstrained().detach().clone() for name in store.keys()}
            optim = self.optim.get_state()
        return {"settings": plain(self.settings), "params": params, "optim": optim,
                "schedule": self.plan.state_dict(), "losses": list(self.losses), "seconds": self.seconds,
                "rng": self.stream.get_state(), "done": self.done, "lr": self.lr,
                "window_params": self.window_params}

    def load_state_dict(self, saved):
        """Continue from :meth:`state_dict` output of the same fit."""
        with self.problem.isolated(params=self.params):
            store = pyro.get_param_store()
            missing = sorted(set(saved["params"]) - set(store.keys()))
            if missing:
                raise ModelGuideError(f"the saved state has parameters {missing} that this guide does not create")
            with torch.no_grad():
                for name, value in saved["params"].items():
                    store[name].unconstrained().copy_(value)
            self.optim.set_state(saved["optim"])
        self.plan.load_state_dict(saved["schedule"])
        self.losses = list(saved["losses"])
        self.done = saved["done"]
        self.seconds = saved["seconds"]
        self.stream.set_state(saved["rng"])
        self.lr = saved["lr"]
        self.optim.set_lr(self.lr)
        self.window_params = saved.get("window_params")


def init(
    model,
    guide,
    *args,
    objective="elbo",
    steps=2000,
    lr=0.01,
    num_particles=None,
    seed=0,
    schedule=None,
    jit=True,
    max_seconds=None,
    optim=None,
    init=None,
    **model_kwargs,
):
    """A :class:`FitState` for fitting ``guide`` to the posterior of ``model`` given ``*args, **model_kwargs``
    (or a :class:`~vi_toolkit.problem.Problem` as ``model`` and no data). The settings are those of
    :func:`vi_toolkit.fit_vi` (``optim``: see there and :func:`vi_toolkit.adam.make_optimizer`)."""
    _check_settings(model, steps, lr, num_particles, max_seconds, model_kwargs)
    check_optim(optim)
    seed = check_seed(seed)
    custom_elbo = isinstance(objective, ELBO)
    if not custom_elbo:
        objective = as_objective(objective)
    if schedule is None:
        schedule = Schedule(early_stop=custom_elbo or OBJECTIVES[objective.name].early_stop)
    elif not isinstance(schedule, Schedule):
        raise ConfigError(f"schedule must be a vt.Schedule, got {type(schedule).__name__}")
    start = time.perf_counter()
    problem = Problem.of(model, *args, **model_kwargs)
    model, guide = _isolate(problem.model, guide)
    problem = dataclasses.replace(problem, model=model)  # the fit's own copy of any nn.Module
    gaussian, start_info = _start(problem, guide, init, seed)
    guide, guide_name = make_guide(guide, model, gaussian)
    if num_particles is None:
        num_particles = _auto_particles(problem, None if custom_elbo else objective.name)
    objective_name = type(objective).__name__ if custom_elbo else objective.name
    settings = {
        "model": _identity(problem.model),
        "data": problem.data_hash,
        "guide": guide_name,
        "guide_type": _identity(guide),
        "objective": objective_name,
        "options": {} if custom_elbo else {k: repr(v) for k, v in objective.options.items()},
        "lr": float(lr),
        "steps": steps,
        "max_seconds": max_seconds,
        "num_particles": num_particles,
        "seed": seed,
        "schedule": asdict(schedule),
        "start": start_info["source"],
    }
    if optim is not None:  # absent for the default Adam, so that earlier checkpoints still match
        settings["optim"] = describe_optim(optim)
    params = {"params": {}, "constraints": {}}
    with problem.isolated(seed, params=params), pyro.validation_enabled(True):
        enumerated = objective_name == "elbo-enum"
        structure = traces.inspect_pair(model, guide, problem.args, problem.kwargs, enumerated_ok=enumerated)
        mpn = structure.max_plate_nesting
        # Does every site broadcast over a particle dimension? Then the ELBO's particles (if more than one) and
        # the result's draws and log-weights are vectorized; otherwise they loop.
        broadcasts = problem.broadcasts and traces.broadcasts(
            model, guide, problem.args, problem.kwargs, max(num_particles, 2), mpn
        )
        vectorized = num_particles > 1 and broadcasts
        if custom_elbo:
            elbo, used_jit = objective, False
        else:
            elbo, used_jit = _build_elbo(objective, num_particles, vectorized, mpn, jit, model, guide, problem)
    info = {k: v for k, v in settings.items() if k not in ("model", "data", "guide_type")}
    info.update(jit=used_jit, vectorized_particles=vectorized, threads=problem.threads, start=start_info)
    state = FitState(problem, guide, structure, broadcasts, elbo, settings, info, params, optim=optim)
    state.seconds = time.perf_counter() - start
    return state


AUTO_PARTICLES = 32  # particles per gradient of an ELBO fit of a small model that broadcasts (see _auto_particles)
_PARTICLES_ONLY_REDUCE_NOISE = ("elbo", "elbo-plain", "elbo-analytic")


def _auto_particles(problem, objective_name):
    """``num_particles=None``: AUTO_PARTICLES for an ELBO (where particles only lower the gradient's noise)
    of a small model (largest tensor below the thread policy's size) that broadcasts over particles, where
    they cost about one particle's time (at most 1.7x on the posteriordb corpus) and make both the fit and the
    stopping rule's judgement sharper: with 8, a settled fit's posterior means still wandered by up to 0.14 sds
    from seed to seed on a 3-parameter regression, with 32 by 0.03;
    else 1 (a model run once per particle, a large one, a mini-batched one, whose gradient noise is mostly
    the batch's, or an objective whose value depends on the count)."""
    small = problem.threads == 1 and not problem.subsampled
    return AUTO_PARTICLES if objective_name in _PARTICLES_ONLY_REDUCE_NOISE and small and problem.broadcasts else 1


def _start(problem, guide, init, seed):
    """(GaussianStart or None, info): the Laplace start of an autoguide named by ``guide`` (``init=None``),
    the Gaussian of a result (``init=result`` with ``gaussian()``), or none (``init=False``, a guide callable,
    a family that is not whitened, or a model without a usable mode: ``info["reason"]`` says why)."""
    from .gaussian_start import from_result, gaussian_start, start_info
    from .whitened_guides import WHITENED

    if init is False or not isinstance(guide, str) or guide not in WHITENED:
        why = "init=False" if init is False else "a guide of the user's" if not isinstance(guide, str) else \
            f"guide {guide!r} is not whitened" if guide in AUTOGUIDES else ""
        return None, start_info(None, why)
    if init is not None:
        if not callable(getattr(init, "gaussian", None)):
            raise ConfigError(f"init must be None (a Laplace start), False (Pyro's own start) or a result with "
                              f"gaussian() (vt.pathfinder, vt.dadvi, ...); got {type(init).__name__}")
        from .log_density import UnconstrainedModel

        dim = UnconstrainedModel(problem.model, problem.args, problem.kwargs, problem.max_plate_nesting).dim
        start = from_result(init, dim)
        return start, start_info(start)
    start, reason = gaussian_start(problem, seed)
    return start, start_info(start, reason)


def step(state):
    """One SVI step of ``state`` (updated in place); returns the loss. Raises :class:`NumericalError` (before
    any update) on a NaN/inf loss or gradient and :class:`ModelGuideError` when the model or guide raises;
    both carry ``partial_result`` with the last good parameters."""
    if state.done:
        raise ConfigError("this fit has finished (state.done is True); take state.result()")
    start = time.perf_counter()
    index = state.steps_run
    problem = state.problem
    with problem.isolated(stream=state.stream, params=state.params), pyro.validation_enabled(index == 0):
        rng = torch.get_rng_state()
        try:
            loss = _svi_step(state.elbo, state.optim, state.problem.model, state.guide, problem.args, problem.kwargs)
        except _NonFinite as failure:
            raise _numerical_error(failure, index, rng, state) from None
        except VIToolkitError:
            raise
        except Exception as exc:  # noqa: BLE001 - the user's model or guide raised
            _zero_grads()
            when = "the first SVI step" if index == 0 else f"SVI step {index}"
            raise ModelGuideError(
                f"{when} failed: {type(exc).__name__}: {exc}"
                + (". The last good parameters are in this error's partial_result" if index else ""),
                step=index,
                partial_result=state.result() if index else None,
            ) from exc
    state.losses.append(loss)
    state.seconds += time.perf_counter() - start
    if state.plan.at_check(index):
        start = time.perf_counter()
        state.done = state.plan.update(index, state.losses, state.seconds, lambda: _still_improving(state))
        state.window_params = _copy_params(state.params)
        state.seconds += time.perf_counter() - start
    else:
        state.done = state.plan.update(index, state.losses, state.seconds)
    lr = state.base_lr * state.plan.factor(index + 1)
    if lr != state.lr:
        state.lr = lr
        state.optim.set_lr(lr)
    return loss


IMPROVEMENT_DRAWS = 64  # guide draws of the common-random-numbers test of _still_improving


def _copy_params(params):
    """A copy of the unconstrained parameter tensors of a parameter-store state, by name."""
    return {name: value.detach().clone() for name, value in params["params"].items()}


def _still_improving(state):
    """Whether the ELBO rose over the last window, on common random numbers: the log-weights
    log p(x, z_s) - log q(z_s) of the same K draws of the guide's noise (one fixed stream) at the window's
    start and now, paired: d_s = log w_s(now) - log w_s(then), improving when mean(d) > sd(d) / sqrt(K).
    Pairing removes the draw-to-draw noise that hides a slow steady gain in single-draw losses (a Gamma guide
    walking a long ridge). One standard error, not two: a wrong "improving" costs a window of steps, a wrong
    "stopped" an under-fitted result. False where that cannot be judged (no earlier window, a point-mass guide, or a
    non-finite weight)."""
    if state.window_params is None:
        return False
    seed = state.settings["seed"]
    weights = []
    then = {"params": state.window_params, "constraints": state.params["constraints"]}
    for params in (then, state.params):
        result = VIResult(problem=state.problem, guide=state.guide, structure=state.structure,
                          vectorized=state.vectorized, param_state=params, losses=[], seconds=0.0, info=state.info)
        try:
            log_w = result.log_weights(IMPROVEMENT_DRAWS, seed)
        except VIToolkitError:
            return False
        if log_w is None or not torch.isfinite(log_w).all():
            return False
        weights.append(log_w.double())
    gain = weights[1] - weights[0]
    return bool(gain.mean() > gain.std() / math.sqrt(len(gain)))


def _check_settings(model, steps, lr, num_particles, max_seconds, model_kwargs):
    whole("steps", steps)
    if num_particles is not None:
        whole("num_particles", num_particles)
    positive("lr", lr)
    if max_seconds is not None:
        positive("max_seconds", max_seconds)
    target = model.model if isinstance(model, Problem) else model
    try:
        accepted = inspect.signature(target).parameters
    except (TypeError, ValueError):
        accepted = {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    for name in model_kwargs:
        if name in _FOREIGN_SETTINGS and name not in accepted and not takes_any:
            raise ConfigError(
                f"{name}= is not a vi-toolkit setting and the model takes no such argument; "
                f"use {_FOREIGN_SETTINGS[name]}"
            )


def _identity(fn):
    """What identifies a model or guide across processes: its qualified name, a hash of its source code and,
    for a method, of its object's settings (the attributes that are numbers, strings or tensors)."""
    target = getattr(fn, "__func__", fn)
    owner = getattr(fn, "__self__", None)
    if not (inspect.isfunction(target) or inspect.isclass(target)):
        target, owner = type(target), target
    name = f"{type(owner).__qualname__}.{target.__name__}" if owner is not None else target.__qualname__
    try:
        with _SOURCE_LOCK:  # Python 3.11's inspect parses a class's file with ast, which is not thread-safe there
            source = inspect.getsource(target)
    except (OSError, TypeError):
        source = ""
    state = content_hash(vars(owner)) if owner is not None and hasattr(owner, "__dict__") else ""
    return f"{name}:{hashlib.sha256((source + state).encode()).hexdigest()[:16]}"


def _isolate(model, guide):
    """Deep copies of ``model`` and ``guide`` when they hold torch modules, so that two fits never share
    parameter tensors (copied together, so a model and guide that share a module still share its copy; an
    autoguide's own model, which may be a wrapper such as ``poutine.block(model)``, is copied with them)."""

    def holds_module(fn):
        return isinstance(fn, torch.nn.Module) or isinstance(getattr(fn, "__self__", None), torch.nn.Module)

    if not (holds_module(model) or holds_module(guide)):
        return model, guide
    guide_model = guide.model if isinstance(guide, AutoGuide) else None
    # Pyro's AutoGuide.__getstate__ clears the *original's* model and master references; put them back.
    links = [(m, m._model, m.master) for m in getattr(guide, "modules", list)() if isinstance(m, AutoGuide)]
    try:
        model_copy, guide_copy, guide_model_copy = copy.deepcopy((model, guide, guide_model))
    except Exception:  # noqa: BLE001 - an object that cannot be copied is used as is
        return model, guide
    finally:
        for module, model_link, master in links:
            module._model, module.master = model_link, master
    if isinstance(guide_copy, AutoGuide):
        guide_copy._model = (guide_model_copy,)  # autoguides drop their model when copied (it is not pickled)
    return model_copy, guide_copy


def _zero_grads():
    for _, param in pyro.get_param_store().named_parameters():
        param.grad = None


# The tracer warning that means the compiled graph froze a value that Python code reads (a branch on a
# sampled value, say), when raised from the user's code. Torch's and Pyro's own conversions are shape checks,
# and shape reads (len(x)) are safe too: the fit's arguments keep their shapes.
_UNSAFE_TRACE = "Converting a tensor to a Python"
_LIBRARIES = tuple(os.path.dirname(module.__file__) + os.sep for module in (torch, pyro))


def _unsafe_trace(caught):
    return any(
        issubclass(w.category, torch.jit.TracerWarning)
        and _UNSAFE_TRACE in str(w.message)
        and not os.path.abspath(w.filename).startswith(_LIBRARIES)
        for w in caught
    )


def _build_elbo(objective, num_particles, vectorized, mpn, jit, model, guide, problem):
    """The ELBO to train with, and whether it is the JIT-compiled one.

    The compiled ELBO is used only if it compiles without a tracer warning that the trace may be wrong (a
    Python branch on a tensor value) and its loss equals the plain ELBO's on the same random draws; anything
    else falls back to the plain ELBO, so the fit is correct either way.
    """
    args, kwargs = problem.args, problem.kwargs
    plain = make_elbo(objective, num_particles=num_particles, vectorize=vectorized, max_plate_nesting=mpn, jit=False)
    if not jit or OBJECTIVES[objective.name].jit is None:
        return plain, False
    compiled = make_elbo(objective, num_particles=num_particles, vectorize=vectorized, max_plate_nesting=mpn, jit=True)
    compiled.ignore_jit_warnings = False  # the warnings are how an unsafe trace shows itself
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            compiled.loss_and_grads(model, guide, *args, **kwargs)  # compiles
            rng = torch.get_rng_state()
            expected = float(plain.loss(model, guide, *args, **kwargs))
            torch.set_rng_state(rng)
            got = float(compiled.loss_and_grads(model, guide, *args, **kwargs))
    except Exception:  # noqa: BLE001 - any failure to trace or run compiled means: use the plain ELBO
        return plain, False
    finally:
        _zero_grads()
    if _unsafe_trace(caught) or not math.isclose(got, expected, rel_tol=1e-4, abs_tol=1e-4):
        return plain, False
    return compiled, True


def _svi_step(elbo, optim, model, guide, args, kwargs):
    """One SVI step; returns the loss, or raises _NonFinite (before any update) on a NaN/inf loss or gradient."""
    with poutine.trace(param_only=True) as capture:
        loss = elbo.loss_and_grads(model, guide, *args, **kwargs)
    loss = float(loss)
    params = [site["value"].unconstrained() for site in capture.trace.nodes.values()]
    params = [p for p in params if p.grad is not None]
    if not math.isfinite(loss) or not _all_finite([p.grad for p in params]):
        bad = [pyro.get_param_store().param_name(p) for p in params if not p.grad.isfinite().all()]
        raise _NonFinite(loss, bad)
    if params:
        optim(params)
    for p in params:
        p.grad = None
    return loss


def _all_finite(grads):
    """Whether every gradient entry is finite, in two multi-tensor calls: 0 * g is 0 where g is finite and NaN
    where it is not, so the norms of 0 * g are all finite exactly then (and cannot overflow)."""
    return not grads or bool(torch.stack(torch._foreach_norm(torch._foreach_mul(grads, 0.0))).isfinite().all())


class _NonFinite(Exception):
    def __init__(self, loss, params):
        self.loss = loss
        self.params = params


def _numerical_error(failure, index, rng, state):
    """A NumericalError for a failed step: replay the step's random draws to find the NaN/inf sites."""
    torch.set_rng_state(rng)
    model, guide, args, kwargs = state.problem.model, state.guide, state.problem.args, state.problem.kwargs
    num_particles, mpn = state.settings["num_particles"], state.structure.max_plate_nesting
    if state.info["vectorized_particles"]:  # replay the step as the ELBO ran it
        sites = traces.nonfinite_sites(
            traces.vectorize(model, num_particles, mpn), traces.vectorize(guide, num_particles, mpn), args, kwargs
        )
    else:
        sites = []
        for _ in range(num_particles):
            sites += [s for s in traces.nonfinite_sites(model, guide, args, kwargs) if s not in sites]
    _zero_grads()
    what = "loss" if not math.isfinite(failure.loss) else "gradient"
    where = []
    if sites:
        where.append(f"site(s) {', '.join(sites)}")
    if failure.params:
        where.append(f"gradient of parameter(s) {', '.join(failure.params)}")
    location = "; ".join(where) if where else "no single site (the loss overflowed in sum)"
    return NumericalError(
        f"the {what} became {failure.loss if what == 'loss' else 'NaN/inf'} at step {index}: {location}. "
        "Lower lr, check scales and constraints in the model, or standardize the data; "
        "the last good parameters are in this error's partial_result",
        step=index,
        sites=sites + list(failure.params),
        partial_result=state.result(),
    )
