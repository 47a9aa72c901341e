"""Optimizers for SVI: one torch optimizer over every parameter the steps touch, checkpointed by parameter name.

Pyro's ``pyro.optim.Adam`` keeps one torch optimizer per parameter and steps them one by one in Python; for a
network with a dozen weight tensors that loop costs as much as the forward pass. :class:`TorchOptimizer` keeps a
single torch optimizer and adds parameters to it as SVI first meets them (autoguides create theirs on the first
call), so a step is one call over all tensors. The default, :class:`Adam`, is ``torch.optim.Adam(fused=True)``
(one fused kernel); the update rule is Adam's, unchanged. Hand-written guides with few parameters (at most 32 numbers) use
Adam with a full second-moment matrix instead (:mod:`vi_toolkit.full_matrix_adam`).

``fit_vi(..., optim=...)`` takes any other optimizer (see :func:`make_optimizer`): a torch optimizer class, a
``(class, options)`` pair, or a Pyro optimizer (``pyro.optim.ClippedAdam({...})``, any ``PyroOptim``). The
schedule's step size is set on the optimizer's parameter groups whenever it changes.
"""

import copy
import inspect

import torch
import torch._dynamo  # noqa: F401  (every torch optimizer imports it on first construction, ~1.6 s here: at
# import time, with the other imports, rather than inside the first fit's clock)
from pyro import get_param_store
from pyro.optim import PyroOptim
from pyro.optim.lr_scheduler import PyroLRScheduler

from .errors import ConfigError
from .full_matrix_adam import MAX_PARAMETERS, FullMatrixAdam


class TorchOptimizer:
    """``TorchOptimizer(cls, lr, **options)``: one ``cls(params, lr=lr, **options)`` over every parameter; call it
    with the (unconstrained) parameters that have gradients to take one step."""

    def __init__(self, cls, lr, **options):
        self.cls, self.lr, self.options = cls, lr, dict(options)
        self.optim = None
        self.known = set()  # ids of the tensors the optimizer holds

    def _add(self, params):
        new = list({id(p): p for p in params if id(p) not in self.known}.values())  # a trace may read one twice
        if not new:
            return
        self.known.update(id(p) for p in new)
        if self.optim is None:
            self.optim = self.cls(new, lr=self.lr, **self.options)
        else:
            self.optim.add_param_group({"params": new})

    def __call__(self, params):
        self._add(params)
        self.optim.step()

    def set_lr(self, lr):
        self.lr = lr
        for group in self.optim.param_groups if self.optim else ():
            group["lr"] = lr

    def _names(self):
        store = get_param_store()
        return [store.param_name(p) for group in self.optim.param_groups for p in group["params"]]

    def get_state(self):
        """The optimizer state with each tensor named by its parameter-store name (tensors, numbers and strings
        only: loadable with ``torch.load(weights_only=True)``)."""
        if self.optim is None:
            return None
        return {"names": self._names(), "state": self.optim.state_dict()}

    def set_state(self, state):
        """Restore :meth:`get_state` output; the parameter store must already hold the named parameters."""
        if state is None:
            return
        store = get_param_store()
        params = dict(store.named_parameters())
        self.optim = None
        self.known = set()
        self._add([params[name] for name in state["names"]])
        saved = state["state"]
        # the saved state has one group per _add call; the restored optimizer holds them all in one group
        groups = [{**saved["param_groups"][0], "params": list(range(len(state["names"])))}]
        self.optim.load_state_dict({"state": saved["state"], "param_groups": groups})


class Adam(TorchOptimizer):
    """``Adam(lr, betas)``: the default. Over at most :data:`~vi_toolkit.full_matrix_adam.MAX_PARAMETERS`
    numbers of a hand-written guide (``full_matrix``) :class:`~vi_toolkit.full_matrix_adam.FullMatrixAdam`,
    which walks the ridges of correlated parameters that diagonal Adam crawls along; else (more numbers, or an
    autoguide, which the Laplace start already whitens) ``torch.optim.Adam(fused=True)``. Decided by the
    parameters of the first step."""

    def __init__(self, lr, betas, full_matrix=True):
        super().__init__(torch.optim.Adam, lr, betas=tuple(betas), fused=True)
        self.betas = tuple(betas)
        self.full_matrix = full_matrix

    def _add(self, params):
        if self.full_matrix and self.optim is None and sum(p.numel() for p in {id(p): p for p in params}.values()) <= MAX_PARAMETERS:
            self.cls, self.options = FullMatrixAdam, {"betas": self.betas}
        super()._add(params)


class PyroOptimizer:
    """A Pyro optimizer (``PyroOptim``: one torch optimizer per parameter, with Pyro's gradient clipping), under
    the toolkit's schedule: each parameter group's step size is its own initial step size (the optimizer's
    ``lr`` argument) times the schedule's factor ``lr / base_lr``."""

    def __init__(self, optim, base_lr):
        self.pyro_optim, self.base_lr, self.lr = optim, base_lr, base_lr
        self.initial = {}  # optimizer id -> initial lr of each of its groups

    def _factor(self):
        return self.lr / self.base_lr

    def _apply(self, optimizer):
        for group, lr in zip(optimizer.param_groups, self.initial[id(optimizer)]):
            group["lr"] = lr * self._factor()

    def __call__(self, params):
        optim = self.pyro_optim
        for p in params:  # create new optimizers first (as PyroOptim does), so the step size is set before a step
            if p not in optim.optim_objs:
                optimizer = optim.optim_objs[p] = optim._get_optim(p)
                optim.grad_clip[p] = optim._get_grad_clip(p)
                self.initial[id(optimizer)] = [group["lr"] for group in optimizer.param_groups]
                state = optim._state_waiting_to_be_consumed.pop(get_param_store().param_name(p), None)
                if state is not None:
                    optimizer.load_state_dict(state)
                self._apply(optimizer)
        optim(params)

    def set_lr(self, lr):
        self.lr = lr
        for optimizer in self.pyro_optim.optim_objs.values():
            self._apply(optimizer)

    def get_state(self):
        """Pyro's state: parameter-store name -> that parameter's optimizer ``state_dict``."""
        return {"pyro": self.pyro_optim.get_state()}

    def set_state(self, state):
        if state is None:
            return
        self.pyro_optim.optim_objs.clear()
        self.pyro_optim.grad_clip.clear()
        self.initial.clear()
        self.pyro_optim.set_state(state["pyro"])


def describe(optim):
    """What identifies an ``optim=`` setting in a checkpoint: a string (None for the default Adam)."""
    if optim is None:
        return None
    if isinstance(optim, PyroOptim):
        args = optim.pt_optim_args
        args = repr(sorted(args.items())) if isinstance(args, dict) else getattr(args, "__qualname__", "callable")
        return f"pyro:{getattr(optim.pt_optim_constructor, '__qualname__', optim.pt_optim_constructor)}:{args}"
    cls, options = _split(optim)
    return f"torch:{cls.__module__}.{cls.__qualname__}:{repr(sorted(options.items()))}"


def _split(optim):
    """``(torch optimizer class, options)`` from a class or a ``(class, options)`` pair; ConfigError otherwise."""
    cls, options = (optim, {}) if inspect.isclass(optim) else (tuple(optim) + (None, None))[:2] \
        if isinstance(optim, (tuple, list)) and len(optim) == 2 else (None, None)
    if not (inspect.isclass(cls) and issubclass(cls, torch.optim.Optimizer)) or not isinstance(options, dict):
        raise ConfigError(
            "optim must be a torch optimizer class (torch.optim.SGD), a pair (torch.optim.SGD, {'momentum': 0.9}) "
            f"or a Pyro optimizer (pyro.optim.ClippedAdam({{'lr': 0.01}})); got {optim!r}"
        )
    if "lr" in options:
        raise ConfigError("give the step size as fit_vi's lr=, not in the optimizer's options")
    return cls, options


def make_optimizer(optim, lr, betas, full_matrix=True):
    """The optimizer of a fit: the fused Adam for ``optim=None``; a torch optimizer class or ``(class, options)``
    over every parameter at step size ``lr``; a Pyro ``PyroOptim`` at its own step size (scaled by the
    schedule)."""
    if optim is None:
        return Adam(lr, betas, full_matrix)
    if isinstance(optim, PyroLRScheduler):
        raise ConfigError("a Pyro learning-rate scheduler sets its own step size; pass its optimizer and use "
                          "schedule=vt.Schedule(...) (or vt.CONSTANT) for the step size")
    if isinstance(optim, PyroOptim):  # the fit's own copy: the caller's optimizer object is left unstepped
        return PyroOptimizer(copy.deepcopy(optim), lr)
    cls, options = _split(optim)
    return TorchOptimizer(cls, lr, **options)


def check(optim):
    """ConfigError early for an ``optim=`` that is not one of the accepted forms."""
    if optim is not None and not isinstance(optim, PyroOptim):
        _split(optim)
    if isinstance(optim, PyroLRScheduler):
        make_optimizer(optim, 1.0, (0.9, 0.99))
