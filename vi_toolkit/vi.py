"""``fit_vi``: stochastic variational inference with Pyro's ELBOs, a loop over :func:`vi_toolkit.svi.step`
with a progress bar and checkpoints."""

from tqdm.auto import tqdm

from . import svi
from .checkpoint import load_checkpoint, save_checkpoint
from .isolation import threads_limited
from .validate import whole
from .vi_result import VIResult

__all__ = ["VIResult", "fit_vi"]


def fit_vi(
    model,
    guide,
    *args,
    objective="elbo",
    steps=2000,
    lr=0.01,
    num_particles=None,
    seed=0,
    progress=True,
    checkpoint=None,
    checkpoint_every=100,
    schedule=None,
    jit=True,
    max_seconds=None,
    optim=None,
    init=None,
    **model_kwargs,
):
    """Fit ``guide`` to the posterior of ``model`` given ``*args, **model_kwargs`` by maximizing an ELBO.

    - ``guide``: a Pyro guide callable, or an autoguide name (see :data:`vi_toolkit.guides.AUTOGUIDES`).
    - ``objective``: ``"elbo"`` (Trace_ELBO, reverse KL), ``"elbo-analytic"``, ``"elbo-enum"``, any name in
      :data:`vi_toolkit.objectives.OBJECTIVES`, a :class:`vi_toolkit.Objective` with options, or a
      ``pyro.infer.ELBO`` instance (used as given: no JIT or particle decisions).
    - ``optim``: the optimizer; default (None) one fused ``torch.optim.Adam`` over all parameters (betas from the
      schedule). Else a torch optimizer class (``torch.optim.SGD``), a pair ``(torch.optim.SGD, {"momentum":
      0.9})`` (options without ``lr``: the step size is ``lr``), or a Pyro optimizer (``pyro.optim.ClippedAdam
      ({"lr": 0.01})``, any ``PyroOptim``; it steps at its own ``lr``, scaled by the schedule's factor, and the
      fit uses its own copy). The schedule sets the step size of the optimizer's parameter groups.
    - The optimizer at step size ``lr``, following ``schedule`` (default :class:`vi_toolkit.Schedule`: constant until the
      loss stops improving, then a geometric decay to ``lr/100`` over the last 20% of ``steps``, then stop).
    - ``init``: where an autoguide named ``"normal"``, ``"diag"``, ``"mvn"``, ``"lowrank"``, ``"iaf"`` or
      ``"laplace"`` starts. None (default): at the Laplace approximation of the posterior in unconstrained
      coordinates (the highest mode damped Newton steps find from the origin and prior draws, the inverse Hessian
      there), and the guide is fitted in coordinates whitened by it (:mod:`vi_toolkit.whitened_guides`;
      ``"normal"`` is then the whitened mean-field family), so that ill-conditioned posteriors and wide priors
      need no tuning; where the model has no usable mode, Pyro's own start (``info["start"]``
      says why). A result with ``gaussian()`` (``vt.pathfinder(...)``): start at and whiten by its Gaussian.
      False: Pyro's autoguide as it is. ``info["grad_evals"]`` counts the start's gradients with the steps'.
    - ``num_particles``: Monte Carlo draws per gradient; > 1 vectorizes them where the model broadcasts, else
      loops over them. None (default): 32 for an ELBO objective on a small model that broadcasts (they cost
      about what one does there), else 1 (see :func:`vi_toolkit.svi._auto_particles`).
    - ``jit``: use the JIT-compiled ELBO where it compiles and agrees with the plain one (checked).
    - ``max_seconds``: a time budget (set-up included): the schedule's decay starts when the last ``cooldown``
      fraction of it is left, and the fit stops when it is spent or after ``steps``, whichever comes first.
    - ``checkpoint``: a path; state is saved atomically every ``checkpoint_every`` steps and at the end, and a
      call with the same path resumes from it (it must be the same model, guide, data and settings).
    - Runs on its own parameters, random stream (from ``seed``) and thread count (one thread for small
      models); the caller's are untouched. Pyro's validation is on for the first step only.
    - A NaN or infinite loss or gradient raises :class:`NumericalError` naming the offending sites and
      parameters, with ``partial_result`` holding the last good parameters.

    The loop is ``state = svi.init(...); while not state.done: svi.step(state)``; see :mod:`vi_toolkit.svi`.
    """
    checkpoint_every = whole("checkpoint_every", checkpoint_every)
    state = svi.init(model, guide, *args, objective=objective, steps=steps, lr=lr, num_particles=num_particles,
                     seed=seed, schedule=schedule, jit=jit, max_seconds=max_seconds, optim=optim, init=init,
                     **model_kwargs)
    if checkpoint:
        saved = load_checkpoint(checkpoint, state.settings)
        if saved is not None:
            state.load_state_dict(saved)
    bar = tqdm(total=steps, initial=state.steps_run, desc=f"fit_vi[{state.info['guide']}]",
               disable=not progress or state.done, leave=False, dynamic_ncols=True)
    smoothed = None
    try:
        with threads_limited(state.problem.threads):  # set once for the loop, not switched at every step
            while not state.done:
                loss = svi.step(state)
                smoothed = loss if smoothed is None else 0.95 * smoothed + 0.05 * loss
                if checkpoint and (state.done or state.steps_run % checkpoint_every == 0):
                    save_checkpoint(checkpoint, state.state_dict())
                bar.update(1)
                if state.steps_run % 25 == 0:
                    bar.set_postfix(loss=f"{smoothed:.5g}", lr=f"{state.lr:.2g}", refresh=False)
    except KeyboardInterrupt:
        if checkpoint:
            save_checkpoint(checkpoint, state.state_dict())
        raise
    finally:
        bar.close()
    return state.result()
