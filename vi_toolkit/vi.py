"""``fit_vi``: stochastic variational inference with Pyro's ELBOs and optimizers, settled, isolated and safe.

Each step is Pyro's ``SVI.step`` (``loss_and_grads``, then Adam on the captured parameters: one fused
optimizer, :mod:`vi_toolkit.adam`) with two additions: gradients are checked for NaN/inf *before* the update,
so the last good parameters survive a numerical failure, and the step size follows
:mod:`vi_toolkit.schedule`, which also decides when to stop.
"""

import copy
import math
import os
import time
import warnings
from dataclasses import asdict

import numpy as np
import pyro
import pyro.poutine as poutine
import torch
from pyro.infer import ELBO
from pyro.infer.autoguide import AutoGuide
from tqdm.auto import tqdm

from . import traces
from .adam import Adam
from .checkpoint import load_checkpoint, save_checkpoint
from .errors import ModelGuideError, NumericalError
from .guides import make_guide
from .inference_data import from_chains, to_numpy
from .objectives import OBJECTIVES, as_objective, make_elbo
from .schedule import Schedule, ScheduleState
from .validate import positive, whole


class VIResult:
    """A fitted guide with its loss history; draws, ELBO and InferenceData come from the fitted parameters."""

    kind = "vi"

    def __init__(self, *, model, guide, args, kwargs, losses, seconds, param_state, structure, vectorized, info):
        self.model = model
        self.guide = guide
        self.args = args
        self.kwargs = kwargs
        self.losses = np.asarray(losses, dtype=float)
        self.seconds = float(seconds)
        self.structure = structure
        self.vectorized = vectorized
        self.info = info  # settings and facts of the fit: objective, guide, lr, steps run, jit used, ...
        self._param_state = param_state

    def __repr__(self):
        return (
            f"VIResult(guide={self.info['guide']!r}, objective={self.info['objective']!r}, "
            f"steps={len(self.losses)}, final_loss={self.losses[-1] if len(self.losses) else float('nan'):.4g}, "
            f"seconds={self.seconds:.2f})"
        )

    def scope(self):
        """Context manager in which ``pyro.param`` sees this fit's parameters (and no other fit's)."""
        return pyro.get_param_store().scope(state=self._param_state)

    @property
    def params(self):
        """Fitted parameters: name -> constrained tensor (detached)."""
        with self.scope():
            store = pyro.get_param_store()
            return {name: store[name].detach().clone() for name in store.keys()}

    def draws(self, n=1000, seed=0):
        """``n`` draws from the fitted guide of every latent (and ``pyro.deterministic``) site of the model:
        site -> numpy array (n, *site_shape)."""
        pyro.set_rng_seed(seed)
        with self.scope():
            draws = traces.posterior_draws(
                self.model, self.guide, self.args, self.kwargs, self.structure, n, vectorized=self.vectorized
            )
        return to_numpy(draws)

    def to_inference_data(self, n=1000, seed=0):
        """The fitted guide as ArviZ InferenceData: one chain of ``n`` independent draws."""
        draws = {name: value[None] for name, value in self.draws(n, seed).items()}
        return from_chains(draws, attrs={"method": "vi", "guide": self.info["guide"], "objective": self.info["objective"]})

    def log_weights(self, n=1000, seed=0):
        """Importance log-weights log p(x, z_s) - log q(z_s) for z_s ~ q: a tensor of shape (n,)."""
        pyro.set_rng_seed(seed)
        with self.scope():
            return traces.log_weights(
                self.model,
                self.guide,
                self.args,
                self.kwargs,
                n,
                self.structure.max_plate_nesting,
                vectorized=self.vectorized,
            )

    def elbo(self, num_particles=1000, seed=0):
        """Monte Carlo ELBO at the fitted guide: E_q[log p(x,z) - log q(z)] <= log p(x)."""
        return float(self.log_weights(num_particles, seed).mean())

    def save(self, folder):
        """Write this result to ``folder`` (see :mod:`vi_toolkit.results`)."""
        from .results import save_result

        return save_result(self, folder)


def _isolate(model, guide):
    """Deep copies of ``model`` and ``guide`` when they hold torch modules, so that two fits never share
    parameter tensors (copied together, so a model and guide that share a module still share its copy)."""

    def holds_module(fn):
        return isinstance(fn, torch.nn.Module) or isinstance(getattr(fn, "__self__", None), torch.nn.Module)

    if not (holds_module(model) or holds_module(guide)):
        return model, guide
    try:
        model_copy, guide_copy = copy.deepcopy((model, guide))
    except Exception:  # an object that cannot be copied is used as is
        return model, guide
    if isinstance(guide_copy, AutoGuide):
        guide_copy._model = (model_copy,)  # autoguides drop their model when copied (it is not pickled)
    return model_copy, guide_copy


def _check_settings(steps, lr, num_particles, checkpoint_every, max_seconds):
    for name, value in (("steps", steps), ("num_particles", num_particles), ("checkpoint_every", checkpoint_every)):
        whole(name, value)
    positive("lr", lr)
    if max_seconds is not None:
        positive("max_seconds", max_seconds)


def _zero_grads():
    for _, param in pyro.get_param_store().named_parameters():
        param.grad = None


# The tracer warning that means the compiled graph froze a value that Python code reads (a branch on a
# sampled value, say), when raised from the user's code. Torch's and Pyro's own conversions are shape checks,
# and shape reads (len(x)) are safe too: fit_vi's arguments keep their shapes.
_UNSAFE_TRACE = "Converting a tensor to a Python"
_LIBRARIES = tuple(os.path.dirname(module.__file__) + os.sep for module in (torch, pyro))


def _unsafe_trace(caught):
    return any(
        issubclass(w.category, torch.jit.TracerWarning)
        and _UNSAFE_TRACE in str(w.message)
        and not os.path.abspath(w.filename).startswith(_LIBRARIES)
        for w in caught
    )


def _build_elbo(objective, num_particles, vectorized, mpn, jit, model, guide, args, kwargs):
    """The ELBO to train with, and whether it is the JIT-compiled one.

    The compiled ELBO is used only if it compiles without a tracer warning that the trace may be wrong (a
    Python branch on a tensor value) and its loss equals the plain ELBO's on the same random draws; anything
    else falls back to the plain ELBO, so the fit is correct either way.
    """
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
    except Exception:  # any failure to trace or run compiled means: use the plain ELBO
        return plain, False
    finally:
        _zero_grads()
    if _unsafe_trace(caught) or not math.isclose(got, expected, rel_tol=1e-4, abs_tol=1e-4):
        return plain, False
    return compiled, True


def _step(elbo, optim, model, guide, args, kwargs):
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


def fit_vi(
    model,
    guide,
    *args,
    objective="elbo",
    steps=2000,
    lr=0.01,
    num_particles=1,
    seed=0,
    progress=True,
    checkpoint=None,
    checkpoint_every=100,
    schedule=None,
    jit=True,
    max_seconds=None,
    **model_kwargs,
):
    """Fit ``guide`` to the posterior of ``model`` given ``*args, **model_kwargs`` by maximizing an ELBO.

    - ``guide``: a Pyro guide callable, or an autoguide name (see :data:`vi_toolkit.guides.AUTOGUIDES`).
    - ``objective``: ``"elbo"`` (Trace_ELBO, reverse KL), ``"elbo-analytic"``, ``"elbo-enum"``, any name in
      :data:`vi_toolkit.objectives.OBJECTIVES`, a :class:`vi_toolkit.Objective` with options, or a
      ``pyro.infer.ELBO`` instance (used as given: no JIT or particle decisions).
    - Adam at step size ``lr``, following ``schedule`` (default :class:`vi_toolkit.Schedule`: constant until the
      loss stops improving, then a geometric decay to ``lr/100`` over the last 20% of ``steps``, then stop).
    - ``num_particles`` > 1 vectorizes the particles where the model broadcasts, else loops over them.
    - ``jit``: use the JIT-compiled ELBO where it compiles and agrees with the plain one (checked).
    - ``max_seconds``: a time budget (set-up included): the schedule's decay starts when the last ``cooldown``
      fraction of it is left, and the fit stops when it is spent or after ``steps``, whichever comes first.
    - ``checkpoint``: a path; state is saved atomically every ``checkpoint_every`` steps and at the end, and a
      call with the same path resumes from it.
    - Runs in its own parameter-store scope; the first step runs with Pyro's validation on, later steps off.
    - A NaN or infinite loss or gradient raises :class:`NumericalError` naming the offending sites and
      parameters, with ``partial_result`` holding the last good parameters.
    """
    _check_settings(steps, lr, num_particles, checkpoint_every, max_seconds)
    custom_elbo = isinstance(objective, ELBO)
    if not custom_elbo:
        objective = as_objective(objective)
    if schedule is None:
        schedule = Schedule(early_stop=custom_elbo or OBJECTIVES[objective.name].early_stop)
    model, guide = _isolate(model, guide)
    guide, guide_name = make_guide(guide, model)
    fingerprint = {
        "objective": type(objective).__name__ if custom_elbo else objective.name,
        "options": {} if custom_elbo else dict(objective.options),
        "guide": guide_name,
        "lr": lr,
        "steps": steps,
        "max_seconds": max_seconds,
        "num_particles": num_particles,
        "seed": seed,
        "schedule": asdict(schedule),
    }
    saved = load_checkpoint(checkpoint, fingerprint) if checkpoint else None
    store = pyro.get_param_store()
    start = time.perf_counter()
    with store.scope(), pyro.validation_enabled(True):
        pyro.set_rng_seed(seed)
        if saved:
            store.set_state(saved["params"])
        enumerated = not custom_elbo and objective.name == "elbo-enum"
        structure = traces.inspect_pair(model, guide, args, model_kwargs, enumerated_ok=enumerated)
        mpn = structure.max_plate_nesting
        # Does every site broadcast over a particle dimension? Then the ELBO's particles (if more than one) and
        # the result's draws and log-weights are vectorized; otherwise they loop.
        broadcasts = traces.broadcasts(model, guide, args, model_kwargs, max(num_particles, 2), mpn)
        vectorized = num_particles > 1 and broadcasts
        if custom_elbo:
            elbo, used_jit = objective, False
        else:
            elbo, used_jit = _build_elbo(objective, num_particles, vectorized, mpn, jit, model, guide, args, model_kwargs)
        run = _Run(model, guide, args, model_kwargs, elbo, structure, broadcasts, fingerprint, start)
        run.info.update(jit=used_jit, vectorized_particles=vectorized)
        if saved:
            run.restore(saved)
        else:
            pyro.set_rng_seed(seed)  # the training stream starts after set-up, whatever set-up consumed
        run.train(progress, checkpoint, checkpoint_every)
        if guide_name == "laplace":
            run.guide = run.guide.laplace_approximation(*args, **model_kwargs)
        return run.result()


class _Run:
    """One fit in progress: the pair and its data, ELBO, Adam, step-size schedule, losses and clock."""

    def __init__(self, model, guide, args, kwargs, elbo, structure, vectorized, fingerprint, start):
        self.model, self.guide, self.args, self.kwargs = model, guide, args, kwargs
        self.elbo, self.structure, self.vectorized = elbo, structure, vectorized
        self.fingerprint = fingerprint
        self.info = dict(fingerprint)
        schedule = Schedule(**fingerprint["schedule"])
        self.lr = fingerprint["lr"]
        self.optim = Adam(self.lr, schedule.betas)
        self.plan = ScheduleState(schedule, fingerprint["steps"], fingerprint["max_seconds"])
        self.losses = []
        self.done = False
        self.seconds_before = 0.0
        self.start = start

    def restore(self, saved):
        """Continue from a checkpoint: optimizer, schedule, losses, clock and random stream."""
        self.optim.set_state(saved["optim"])
        self.plan.load_state_dict(saved["schedule"])
        self.losses = list(saved["losses"])
        self.done = saved["done"]
        self.seconds_before = saved["seconds"]
        self.start = time.perf_counter()  # set-up time of a resumed segment is not counted twice
        torch.set_rng_state(saved["rng"])

    def seconds(self):
        return self.seconds_before + time.perf_counter() - self.start

    def snapshot(self):
        return {
            "fingerprint": self.fingerprint,
            "params": pyro.get_param_store().get_state(),
            "optim": self.optim.get_state(),
            "schedule": self.plan.state_dict(),
            "losses": list(self.losses),
            "seconds": self.seconds(),
            "rng": torch.get_rng_state(),
            "done": self.done,
        }

    def result(self):
        steps = self.fingerprint["steps"]
        info = {**self.info, "steps_run": len(self.losses), "stopped_early": len(self.losses) < steps,
                "decay_start": self.plan.decay_start}
        return VIResult(model=self.model, guide=self.guide, args=self.args, kwargs=self.kwargs, losses=self.losses,
                        seconds=self.seconds(), param_state=pyro.get_param_store().get_state(),
                        structure=self.structure, vectorized=self.vectorized, info=info)

    def step(self, step):
        """One SVI step with its failures translated: NaN/inf -> NumericalError, a broken first step ->
        ModelGuideError."""
        rng = torch.get_rng_state()
        try:
            return _step(self.elbo, self.optim, self.model, self.guide, self.args, self.kwargs)
        except _NonFinite as failure:
            raise _numerical_error(failure, step, rng, self) from None
        except (ValueError, RuntimeError) as exc:
            if step > 0:
                raise
            raise ModelGuideError(f"the first SVI step failed: {type(exc).__name__}: {exc}") from exc

    def train(self, progress, checkpoint, checkpoint_every):
        steps = self.fingerprint["steps"]
        bar = tqdm(total=steps, initial=len(self.losses), desc=f"fit_vi[{self.fingerprint['guide']}]",
                   disable=not progress or self.done, leave=False, dynamic_ncols=True)
        factor = None  # the optimizer exists after the first step; the step size is set from then on
        smoothed = None
        try:
            step = len(self.losses)
            while not self.done:
                loss = self.step(step)
                if step == 0:
                    pyro.enable_validation(False)  # validated once; the rest runs without checks
                self.losses.append(loss)
                smoothed = loss if smoothed is None else 0.95 * smoothed + 0.05 * loss
                self.done = self.plan.update(step, self.losses, self.seconds())
                step += 1
                if self.plan.factor(step) != factor:
                    factor = self.plan.factor(step)
                    self.optim.set_lr(self.lr * factor)
                if checkpoint and (self.done or step % checkpoint_every == 0):
                    save_checkpoint(checkpoint, self.snapshot())
                bar.update(1)
                if step % 25 == 0:
                    bar.set_postfix(loss=f"{smoothed:.5g}", lr=f"{self.lr * factor:.2g}", refresh=False)
        except KeyboardInterrupt:
            if checkpoint:
                save_checkpoint(checkpoint, self.snapshot())
            raise
        finally:
            bar.close()


def _numerical_error(failure, step, rng, run):
    """A NumericalError for a failed step: replay the step's random draws to find the NaN/inf sites."""
    torch.set_rng_state(rng)
    model, guide, args, kwargs = run.model, run.guide, run.args, run.kwargs
    num_particles, mpn = run.fingerprint["num_particles"], run.structure.max_plate_nesting
    if run.info["vectorized_particles"]:  # replay the step as the ELBO ran it
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
        f"the {what} became {failure.loss if what == 'loss' else 'NaN/inf'} at step {step}: {location}. "
        "Lower lr, check scales and constraints in the model, or standardize the data; "
        "the last good parameters are in this error's partial_result",
        step=step,
        sites=sites + list(failure.params),
        partial_result=run.result(),
    )
