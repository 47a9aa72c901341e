"""Objectives for :func:`vi_toolkit.fit_vi`, looked up by name.

Each entry maps a name to a Pyro ELBO class and, where Pyro has one, its JIT-compiled twin.
Adding an objective is one :func:`register_objective` call.
"""

from dataclasses import dataclass, field

from pyro.infer import (
    ELBO,
    JitTrace_ELBO,
    JitTraceEnum_ELBO,
    JitTraceMeanField_ELBO,
    Trace_ELBO,
    TraceEnum_ELBO,
    TraceMeanField_ELBO,
)

from .errors import UnknownNameError


@dataclass(frozen=True)
class ObjectiveKind:
    """A registered objective: the Pyro ELBO class that estimates it, and its JIT twin (or None)."""

    plain: type
    jit: type = None
    summary: str = ""


@dataclass(frozen=True)
class Objective:
    """An objective name with options, e.g. ``Objective("renyi", alpha=0.0)``."""

    name: str
    options: dict = field(default_factory=dict)

    def __init__(self, name, **options):
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "options", options)


OBJECTIVES = {}


def register_objective(name, plain, jit=None, summary=""):
    OBJECTIVES[name] = ObjectiveKind(plain, jit, summary)


register_objective(
    "elbo", Trace_ELBO, JitTrace_ELBO, "reverse KL: log p(x) >= E_q[log p(x,z) - log q(z)]"
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
    return cls(**kwargs)


__all__ = ["ELBO", "OBJECTIVES", "Objective", "as_objective", "make_elbo", "register_objective"]
