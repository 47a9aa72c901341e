"""Checkpoints of a running fit: parameters, optimizer and schedule state, losses and the RNG, saved atomically."""

import os

import torch

from .errors import CheckpointError
from .io import atomic_path

FORMAT = 1


def save_checkpoint(path, state):
    """Write ``state`` to ``path`` atomically: a kill during the write leaves the previous checkpoint intact."""
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, **state}, tmp)


def load_checkpoint(path, fingerprint):
    """The checkpoint at ``path``, or None if there is none; it must have been written by the same fit."""
    if not os.path.exists(path):
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch.load raises many types on a corrupt file
        raise CheckpointError(
            f"cannot read checkpoint {str(path)!r} ({type(exc).__name__}: {exc}); delete it to start afresh"
        ) from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is not a vi-toolkit checkpoint; delete it or choose another path")
    if state["fingerprint"] != fingerprint:
        changed = sorted(k for k in fingerprint if state["fingerprint"].get(k) != fingerprint[k])
        raise CheckpointError(
            f"checkpoint {str(path)!r} belongs to a different fit (changed: {', '.join(changed)}); "
            "use another checkpoint path or the original settings"
        )
    return state
