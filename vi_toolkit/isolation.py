"""Running Pyro code without touching the caller's global state: random stream, thread count, parameter store.

Pyro keeps process-wide state: it samples from torch's global generator, its parameter store and handler
stack are global, and torch's intra-op thread count is global too. Every entry point of the toolkit runs its
Pyro code inside :func:`isolated`, which gives that code its own random stream (a seed, or a saved
:class:`Stream`), its own thread count and parameter-store state, and puts the caller's back on the way out.
One lock serializes such blocks, so two threads that fit at once interleave correctly instead of corrupting
each other's traces.

**Thread policy** (:func:`threads_for`): a model whose tensors are all small runs on one intra-op thread.
Below torch's parallel grain size extra threads do no work, yet on a busy machine their synchronization made
small fits 8-20x slower; large tensors (an image mini-batch) keep torch's default.
"""

import contextlib
import threading

import pyro
import torch

from .validate import seed as check_seed

SMALL_TENSOR = 2**16  # elements: the largest tensor of a model below this runs on one thread

_LOCK = threading.RLock()


class Stream:
    """A private random stream: the state of torch's generator, started from ``seed`` and carried between
    blocks (a fit's steps) without touching the caller's stream."""

    def __init__(self, seed):
        self.state = torch.Generator().manual_seed(check_seed(seed)).get_state()  # the global one stays as is

    def get_state(self):
        return self.state.clone()

    def set_state(self, state):
        self.state = torch.as_tensor(state, dtype=torch.uint8).clone()


def threads_for(largest):
    """The thread policy: 1 intra-op thread when the largest tensor has fewer than ``SMALL_TENSOR`` elements,
    else None (torch's own default)."""
    return 1 if largest < SMALL_TENSOR else None


@contextlib.contextmanager
def threads_limited(threads):
    """Run the block on ``threads`` intra-op threads (None: as the caller has it); the caller's count after.
    A loop of many short steps runs inside one such block, so that the count is not switched at every step."""
    caller = torch.get_num_threads()
    try:
        if threads is not None and threads != caller:
            torch.set_num_threads(threads)
        yield
    finally:
        if torch.get_num_threads() != caller:
            torch.set_num_threads(caller)


@contextlib.contextmanager
def isolated(seed=None, *, stream=None, threads=None, params=None):
    """Run the block on a private random stream (``seed``, or ``stream``, which is advanced), ``threads``
    intra-op threads (None: the caller's), and the parameter-store state ``params`` (a dict from
    ``ParamStoreDict.get_state``, updated in place; None: the caller's store). Everything is restored after."""
    with _LOCK, threads_limited(threads):
        caller_rng = torch.get_rng_state()
        try:
            if stream is not None:
                torch.set_rng_state(stream.state)
            elif seed is not None:
                torch.manual_seed(check_seed(seed))
            with pyro.get_param_store().scope(params) if params is not None else contextlib.nullcontext():
                yield
        finally:
            if stream is not None:
                stream.state = torch.get_rng_state()
            torch.set_rng_state(caller_rng)
