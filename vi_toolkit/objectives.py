"""Objectives for :func:`vi_toolkit.fit_vi`, looked up by name.

Each entry maps a name to a Pyro ELBO class and, where Pyro has one, its JIT-compiled twin.
Adding an objective is one :func:`register_objective` call.
"""

from dataclasses import dataclass, field
from typing import Callable

from pyro.infer import (
    ELBO,
    JitTrace_ELBO,
    JitTraceEnum_ELBO,
    JitTraceMeanField_ELBO,
    RenyiELBO,
    Trace_ELBO,
    TraceEnum_ELBO,
    TraceMeanField_ELBO,
)

from .dreg import TraceDReG_IWAE
from .errors import ConfigError, UnknownNameError
from .forward_kl import forward_kl
from .stl import JitTraceSTL_ELBO, TraceSTL_ELBO


@dataclass(frozen=True)
class ObjectiveKind:
    """A registered objective: the Pyro ELBO class (or factory) that estimates it, and its JIT twin (or None)."""

    plain: Callable
    jit: Callable = None
    summary: str = ""
    early_stop: bool = True  # False: the loss is too noisy for the schedule's early stop; run the full steps


@dataclass(frozen=True)
class Objective:
    """An objective name with options, e.g. ``Objective("renyi", alpha=0.0)``."""

    name: str
    options: dict = field(default_factory=dict)

    def __init__(self, name, **options):
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "options", options)


OBJECTIVES = {}


def register_objective(name, plain, jit=None, summary="", early_stop=True):
    """Make ``name`` usable as ``fit_vi(..., objective=name)``: ``plain`` (and ``jit``, or None) build the
    Pyro ELBO from ``num_particles``, ``vectorize_particles``, ``max_plate_nesting`` and the options."""
    OBJECTIVES[name] = ObjectiveKind(plain, jit, summary, early_stop)


register_objective(
    "elbo",
    TraceSTL_ELBO,
    JitTraceSTL_ELBO,
    "reverse KL: log p(x) >= E_q[log p(x,z) - log q(z)] (Trace_ELBO, sticking-the-landing gradient)",
)
register_objective(
    "elbo-plain", Trace_ELBO, JitTrace_ELBO, "Pyro's Trace_ELBO as is (reparameterized gradient with score term)"
)
register_objective(
    "elbo-analytic",
    TraceMeanField_ELBO,
    JitTraceMeanField_ELBO,
    "the ELBO with KL(q||p) in closed form where the distributions allow it",
)
register_objective(
    "elbo-enum",
    TraceEnum_ELBO,
    JitTraceEnum_ELBO,
    "the ELBO with discrete latent sites summed out by enumeration",
)
register_objective(
    "renyi",
    RenyiELBO,
    None,
    "Renyi alpha bound 1/(1-alpha) log E_q[(p(x,z)/q(z))^(1-alpha)] over num_particles draws; "
    "option alpha (default 0: the IWAE bound)",
)
register_objective(
    "iwae-dreg",
    TraceDReG_IWAE,
    None,
    "the IWAE bound log E_q[(1/k) sum_i p(x,z_i)/q(z_i)] over k = num_particles draws (per data point under "
    "subsampling), with doubly reparameterized (DReG) gradients for the guide: unbiased, and their variance does "
    "not grow with k as the plain IWAE gradient's ('renyi', alpha=0) does; needs a reparameterized guide",
)
register_objective(
    "forward-kl",
    forward_kl,
    None,
    "inclusive KL(p||q), mass-covering; option method='score-climbing' (Markovian score climbing, default) "
    "or 'wake-sleep' (reweighted wake-sleep, biased for few particles); needs num_particles >= 2 (100-1000); "
    "its loss is noisy: fit with schedule=vt.Schedule(early_stop=False)",
    early_stop=False,
)


def as_objective(objective):
    """Normalize a name or :class:`Objective` to an :class:`Objective`, checking the name."""
    if isinstance(objective, str):
        objective = Objective(objective)
    if not isinstance(objective, Objective):
        raise UnknownNameError(
            f"objective must be a name or vt.Objective, got {type(objective).__name__}; "
            f"choose one of {sorted(OBJECTIVES)} or pass a pyro.infer.ELBO instance"
        )
    if objective.name not in OBJECTIVES:
        raise UnknownNameError(
            f"unknown objective {objective.name!r}; choose one of {sorted(OBJECTIVES)}"
        )
    return objective


def make_elbo(objective, *, num_particles, vectorize, max_plate_nesting, jit):
    """Build the Pyro ELBO for ``objective``; ``jit=True`` asks for the compiled twin (None if there is none)."""
    kind = OBJECTIVES[objective.name]
    cls = kind.jit if jit else kind.plain
    if cls is None:
        return None
    kwargs = dict(
        num_particles=num_particles,
        vectorize_particles=vectorize,
        max_plate_nesting=max_plate_nesting,
        **objective.options,
    )
    if jit:
        kwargs["ignore_jit_warnings"] = True
    try:
        return cls(**kwargs)
    except (TypeError, ValueError, AssertionError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(
            f"objective {objective.name!r} does not accept options {dict(objective.options)}: {exc}; "
            f"its summary: {kind.summary}"
        ) from None


__all__ = ["ELBO", "OBJECTIVES", "Objective", "as_objective", "make_elbo", "register_objective"]
