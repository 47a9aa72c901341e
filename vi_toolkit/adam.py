"""Adam for SVI: one fused torch optimizer over every parameter the steps touch, checkpointed by parameter name.

Pyro's ``pyro.optim.Adam`` keeps one torch optimizer per parameter and steps them one by one in Python; for a
network with a dozen weight tensors that loop costs as much as the forward pass. This class keeps a single
``torch.optim.Adam(fused=True)`` and adds parameters to it as SVI first meets them (autoguides create theirs
on the first call), so a step is one fused kernel over all tensors. The update rule is Adam's, unchanged.
"""

import torch
import torch._dynamo  # noqa: F401  (every torch optimizer imports it on first construction, ~1.6 s here: at
# import time, with the other imports, rather than inside the first fit's clock)
from pyro import get_param_store


class Adam:
    """``Adam(lr, betas)``; call it with the (unconstrained) parameters that have gradients to take one step."""

    def __init__(self, lr, betas):
        self.lr, self.betas = lr, tuple(betas)
        self.optim = None
        self.known = set()  # ids of the tensors the optimizer holds

    def _add(self, params):
        new = [p for p in params if id(p) not in self.known]
        if not new:
            return
        self.known.update(id(p) for p in new)
        if self.optim is None:
            self.optim = torch.optim.Adam(new, lr=self.lr, betas=self.betas, fused=True)
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
        """The optimizer state with each tensor named by its parameter-store name."""
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
