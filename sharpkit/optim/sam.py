"""Sharpness-Aware Minimization (Foret et al., ICLR 2021, "Sharpness-Aware Minimization for
Efficiently Improving Generalization"), with the adaptive variant of Kwon et al. (ASAM, ICML 2021).

One SAM update is two passes over the same batch:

1. ``first_step``: climb to the (first-order) worst point of the rho-ball,
   ``e(w) = rho * T(w)^2 g / ||T(w) g||`` with ``T(w) = |w|`` when adaptive, identity otherwise;
2. ``second_step``: go back to ``w`` and let the base optimizer step with the gradient taken at ``w + e(w)``.

Unlike the widely copied implementation, ``state_dict()`` carries the base optimizer's state (momentum
buffers), so a run resumed from a checkpoint continues exactly.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .._validation import check_positive


class SAM(torch.optim.Optimizer):
    """SAM wrapper around a base optimizer.

    Args:
        params: parameters or parameter groups, as for any ``torch.optim.Optimizer``.
        base_optimizer: the optimizer class to wrap (e.g. ``torch.optim.SGD``).
        rho: radius of the neighbourhood (Foret et al. use 0.05).
        adaptive: scale the perturbation by ``|w|`` (ASAM).
        **kwargs: passed to ``base_optimizer`` (lr, momentum, weight_decay, ...).
    """

    def __init__(self, params, base_optimizer: type[torch.optim.Optimizer], rho: float = 0.05,
                 adaptive: bool = False, **kwargs: Any) -> None:
        check_positive("rho", rho, allow_zero=True)
        if not (isinstance(base_optimizer, type) and issubclass(base_optimizer, torch.optim.Optimizer)):
            raise TypeError(
                "Expected argument `base_optimizer` to be a torch.optim.Optimizer class such as "
                f"torch.optim.SGD, but got {base_optimizer!r}. Pass the class, not an instance."
            )
        super().__init__(params, dict(rho=rho, adaptive=adaptive, **kwargs))
        self.base_optimizer = base_optimizer(self.param_groups, **kwargs)
        # Share the groups so LR schedulers acting on SAM also act on the base optimizer.
        self.param_groups = self.base_optimizer.param_groups
        self.defaults.update(self.base_optimizer.defaults)

    @torch.no_grad()
    def _grad_norm(self) -> torch.Tensor:
        norms = [
            ((torch.abs(p) if group["adaptive"] else 1.0) * p.grad).norm(p=2)
            for group in self.param_groups for p in group["params"] if p.grad is not None
        ]
        if not norms:
            raise RuntimeError("SAM.first_step found no gradients: call loss.backward() before it.")
        device = norms[0].device
        return torch.stack([n.to(device) for n in norms]).norm(p=2)

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        """Move the weights to ``w + e(w)``; remember ``e(w)`` to undo it in :meth:`second_step`."""
        grad_norm = self._grad_norm()
        for group in self.param_groups:
            scale = group["rho"] / (grad_norm + 1e-12)
            for p in group["params"]:
                if p.grad is None:
                    continue
                e_w = (torch.pow(p, 2) if group["adaptive"] else 1.0) * p.grad * scale.to(p)
                p.add_(e_w)  # climb to the local maximum w + e(w)
                self.state[p]["e_w"] = e_w
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        """Return to ``w`` and take the base optimizer's step with the gradient from ``w + e(w)``."""
        for group in self.param_groups:
            for p in group["params"]:
                e_w = self.state[p].pop("e_w", None)
                if e_w is not None:
                    p.sub_(e_w)  # back to w
        self.base_optimizer.step()  # the sharpness-aware update
        # LR schedulers check that `step()` ran before them; first_step + second_step is a step too.
        self._opt_called = True
        if zero_grad:
            self.zero_grad()

    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor:
        """Full SAM update. ``closure`` must do a full forward-backward pass and return the loss
        (gradients at ``w`` must already be there from the caller's first backward)."""
        if closure is None:
            raise ValueError(
                "SAM.step needs a closure that recomputes the loss and calls backward(), e.g. "
                "`optimizer.step(lambda: (loss_fn(model(x), y).backward(), ...))`; or call first_step() and "
                "second_step() yourself."
            )
        closure = torch.enable_grad()(closure)
        self.first_step(zero_grad=True)
        loss = closure()
        self.second_step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["base_optimizer"] = self.base_optimizer.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        base = state_dict.pop("base_optimizer", None)
        if base is None:
            raise ValueError(
                "This SAM state_dict has no 'base_optimizer' entry, so the momentum buffers are missing "
                "and the run cannot resume exactly. Save it with sharpkit.optim.SAM.state_dict()."
            )
        super().load_state_dict(state_dict)
        self.base_optimizer.load_state_dict(base)
        self.param_groups = self.base_optimizer.param_groups
