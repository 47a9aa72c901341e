"""The problem: a Pyro model with its data, traced and validated once at the boundary.

``Problem.of(model, *args, **kwargs)`` runs the model once (on a private random stream) and records what
every analysis needs to know about it: its latent and ``pyro.deterministic`` sites and their shapes, its plate
nesting, whether it broadcasts over an extra particle dimension (a model written with ``x @ beta`` or a
Python loop over data does not, and is then run one particle at a time), the thread count it runs best on,
and a content hash of its data (what a checkpoint is checked against).
"""

import hashlib
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import pyro
import pyro.poutine as poutine
import torch

from . import traces
from .errors import DataError, ModelGuideError, VIToolkitError
from .isolation import isolated, threads_for

PROBE_PARTICLES = 3  # particles of the broadcast probe (3: not a size that a data dimension is likely to have)


@dataclass(frozen=True, eq=False)
class Problem:
    """A model and its data. Build with :meth:`of`; the fields are facts read off one trace of the model."""

    model: object
    args: tuple
    kwargs: dict
    latent_shapes: dict = field(repr=False)  # latent site -> value shape of one draw
    deterministic_shapes: dict = field(repr=False)  # pyro.deterministic site -> value shape
    max_plate_nesting: int = 0
    broadcasts: bool = True  # every site carries an outer particle dimension when run in a particle plate
    threads: int = None  # intra-op threads to run on (None: torch's default), see vi_toolkit.isolation
    data_hash: str = ""
    subsampled: bool = False  # a plate draws a mini-batch (subsample_size) on each run

    @classmethod
    def of(cls, model, *args, **kwargs):
        """The problem of ``model`` given ``*args, **kwargs`` (a Problem is returned as is)."""
        if isinstance(model, Problem):
            if args or kwargs:
                raise DataError("a Problem carries its own data: pass no data arguments with it")
            return model
        if not callable(model):
            raise ModelGuideError(f"model must be a callable Pyro model, got {type(model).__name__}")
        data_hash = content_hash((args, kwargs))
        scratch = {"params": {}, "constraints": {}}  # parameters the model creates stay out of the caller's store
        with isolated(0, params=scratch), pyro.validation_enabled(False):
            try:
                trace = poutine.trace(model).get_trace(*args, **kwargs)
            except VIToolkitError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure of the user's model on its own data
                raise ModelGuideError(
                    f"running the model once failed: {type(exc).__name__}: {exc}. Check that the data "
                    "arguments are the ones the model takes, with the shapes it expects"
                ) from exc
            check_observed(trace)
            mpn = traces.plate_nesting(trace)
            latent = {n: tuple(s["value"].shape) for n, s in trace.nodes.items() if traces.is_latent(s)}
            broadcasts = model_broadcasts(model, args, kwargs, mpn, latent_shapes=latent)
        deterministic = {
            n: tuple(torch.as_tensor(s["value"]).shape)
            for n, s in trace.nodes.items()
            if s["type"] == "sample" and s["infer"].get("_deterministic")
        }
        largest = max(
            [t.numel() for t in _tensors((args, kwargs))]
            + [torch.as_tensor(s["value"]).numel() for s in trace.nodes.values() if s["type"] == "sample"],
            default=0,
        )
        return cls(model, tuple(args), dict(kwargs), latent, deterministic, mpn, broadcasts,
                   threads_for(largest), data_hash, traces.subsampled(trace))

    @property
    def dim(self):
        """Number of latent coordinates (constrained shapes)."""
        return sum(math.prod(shape) for shape in self.latent_shapes.values())

    def isolated(self, seed=None, **options):
        """:func:`vi_toolkit.isolation.isolated` with this problem's thread count."""
        return isolated(seed, threads=self.threads, **options)


def check_observed(trace):
    """DataError if an observed site holds NaN or infinite values."""
    for name, site in trace.nodes.items():
        if traces.is_sample(site) and site["is_observed"]:
            value = torch.as_tensor(site["value"])
            if value.is_floating_point() and not torch.isfinite(value).all():
                bad = int((~torch.isfinite(value)).sum())
                raise DataError(
                    f"observed site {name!r} holds {bad} NaN or infinite value(s); remove or impute them before fitting"
                )


def model_broadcasts(model, args, kwargs, max_plate_nesting, particles=PROBE_PARTICLES, latent_shapes=None):
    """Whether ``model`` runs exactly with vectorized particles: every sample site carries the particle
    dimension inside an outer particle plate and, where ``latent_shapes`` (site -> shape of one draw) are given,
    each particle's log p(z) and log p(x | z) equal those of the model run on that particle alone. The shapes
    alone can pass where the numbers are wrong: a likelihood written for one draw can be expanded by the
    plates across every pair of particles, each particle's data then scored P times."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trace = poutine.trace(traces.vectorize(model, particles, max_plate_nesting)).get_trace(*args, **kwargs)
            trace.compute_log_prob()
            if not traces.carries_particles(trace, particles, max_plate_nesting):
                return False
            if not latent_shapes:
                return True
            from .log_weights import log_joint  # (log_weights imports this module)

            vectorized = {n: trace.nodes[n]["value"] for n in latent_shapes}
            one_at_a_time = {n: v.reshape((particles,) + latent_shapes[n]) for n, v in vectorized.items()}
            same_batch = poutine.condition(model, data=traces.subsample_indices(trace))  # one mini-batch for both
            together = log_joint(same_batch, args, kwargs, vectorized, max_plate_nesting, vectorized=True)
            alone = log_joint(same_batch, args, kwargs, one_at_a_time, max_plate_nesting, vectorized=False, vmap=False)
    except Exception:  # noqa: BLE001 - a shape error means: it does not broadcast
        return False
    return all(torch.allclose(a, b, rtol=1e-4, atol=1e-3, equal_nan=True) for a, b in zip(together, alone))


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for item in obj:
            yield from _tensors(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _tensors(item)


def content_hash(obj):
    """A SHA-256 of the data: tensors and arrays by dtype, shape and bytes; numbers and strings by value;
    containers item by item; any other object by its type name only."""
    digest = hashlib.sha256()

    def feed(item):
        if isinstance(item, torch.Tensor):
            item = item.detach().cpu().contiguous()
            digest.update(f"tensor{item.dtype}{tuple(item.shape)}".encode())
            digest.update(item.reshape(-1).view(torch.uint8).numpy().tobytes() if item.numel() else b"")
        elif isinstance(item, np.ndarray):
            digest.update(f"array{item.dtype}{item.shape}".encode())
            digest.update(np.ascontiguousarray(item).tobytes() if item.dtype != object else repr(item).encode())
        elif isinstance(item, (tuple, list)):
            digest.update(f"{type(item).__name__}{len(item)}".encode())
            for part in item:
                feed(part)
        elif isinstance(item, dict):
            digest.update(f"dict{len(item)}".encode())
            for key in sorted(item, key=repr):
                feed(repr(key))
                feed(item[key])
        elif item is None or isinstance(item, (bool, int, float, complex, str, bytes, np.generic)):
            digest.update(f"{type(item).__name__}:{item!r}".encode())
        else:
            digest.update(f"object:{type(item).__module__}.{type(item).__qualname__}".encode())

    feed(obj)
    return digest.hexdigest()
