"""Sharpness-Aware Minimization (Foret et al., ICLR 2021, "Sharpness-Aware Minimization for
Efficiently Improving Generalization"), with the adaptive variant of Kwon et al. (ASAM, ICML 2021).

One SAM update is two passes over the same batch:

1. ``first_step``: climb to the (first-order) worst point of the rho-ball,
   ``e(w) = rho * T(w)^2 g / ||T(w) g||`` with ``T(w) = |w|`` when adaptive, identity otherwise;
2. ``second_step``: go back to ``w`` and let the base optimizer step with the gradient taken at ``w + e(w)``.

Going back copies the ``w`` saved by ``first_step`` (``restore="exact"``, as davda54/sam and
pytorch-optimizer do), so the weights are ``w`` bit for bit; ``restore="subtract"`` computes
``(w + e(w)) - e(w)`` instead, which rounds (with lr = 0, twenty float32 steps leave weights 1e-8 to
1e-7 away from ``w``). sharpkit subtracted until this option existed: the runs stored in its results were
trained so, and are reproduced bit for bit only with ``restore="subtract"`` (what its trainer passes).

Unlike the widely copied implementation, ``state_dict()`` carries the base optimizer's state (momentum
buffers), so a run resumed from a checkpoint continues exactly.

Mixed precision: run both forward passes under the same ``torch.autocast`` and both steps outside it.
With bfloat16 (sharpkit's trainer with ``bf16``) nothing else changes: the parameters, ``e(w)`` and the saved
``w`` keep the parameters' dtype (float32), so the restore stays exact. float16 needs a
``torch.amp.GradScaler``, whose ``scaler.step(optimizer)`` calls ``step()`` without a closure and so
cannot drive the two passes; these optimizers have no scaler integration, so prefer bfloat16.

BatchNorm: both passes run in training mode, so by default both update the running statistics, the
second at ``w + e(w)``, where the weights do not stay. :func:`~sharpkit.optim.frozen_batchnorm_stats` around the second
pass keeps it from doing so (a common SAM practice, e.g. davda54/sam's ``disable_running_stats``).
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from ..utils.validation import check_choice, check_positive

__all__ = ["RESTORE_MODES", "SAM", "frozen_batchnorm_stats"]

RESTORE_MODES = ("exact", "subtract")
# The per-parameter state entry first_step leaves for second_step: the saved w, or e(w) to subtract.
_SAVED = {"exact": "w", "subtract": "e_w"}


class SAM(torch.optim.Optimizer):
    """SAM wrapper around a base optimizer.

    Args:
        params: parameters or parameter groups, as for any ``torch.optim.Optimizer``.
        base_optimizer: the optimizer class to wrap (e.g. ``torch.optim.SGD``).
        rho: radius of the neighbourhood (Foret et al. use 0.05).
        adaptive: scale the perturbation by ``|w|`` (ASAM).
        restore: ``"exact"`` (default): ``first_step`` keeps a copy of ``w`` and ``second_step`` copies it
            back; ``"subtract"``: ``second_step`` subtracts ``e(w)`` (the arithmetic of sharpkit's stored runs,
            kept to reproduce them bit for bit). Both keep one tensor per perturbed parameter.
        **kwargs: passed to ``base_optimizer`` (lr, momentum, weight_decay, ...).

    Call ``first_step`` and ``second_step`` in turn, once each per batch; calling either out of turn raises
    ``RuntimeError``. Or call ``step(closure)``, whose closure must return the loss (not a tuple).

    Examples:
        >>> import torch
        >>> import torch.nn.functional as F
        >>> from sharpkit.optim import SAM
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Linear(4, 3)
        >>> x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
        >>> optimizer = SAM(model.parameters(), torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9)
        >>> F.cross_entropy(model(x), y).backward()  # the gradient at w, for e(w)
        >>> optimizer.first_step(zero_grad=True)  # to w + e(w)
        >>> F.cross_entropy(model(x), y).backward()  # the gradient at w + e(w)
        >>> optimizer.second_step(zero_grad=True)  # back to w, then the SGD step

        The same update with a closure:

        >>> def closure():
        ...     loss = F.cross_entropy(model(x), y)
        ...     loss.backward()
        ...     return loss
        >>> F.cross_entropy(model(x), y).backward()  # the gradient at w, for e(w)
        >>> loss = optimizer.step(closure)  # the gradient at w + e(w), then the base step from w
        >>> optimizer.zero_grad()

        With ``lr=0`` the weights come back bit for bit (``restore="exact"``):

        >>> still = SAM(model.parameters(), torch.optim.SGD, lr=0.0)
        >>> before = model.weight.detach().clone()
        >>> F.cross_entropy(model(x), y).backward()
        >>> loss = still.step(closure)
        >>> torch.equal(model.weight, before)
        True
    """

    def __init__(self, params, base_optimizer: type[torch.optim.Optimizer], rho: float = 0.05,
                 adaptive: bool = False, restore: str = "exact", **kwargs: Any) -> None:
        check_positive("rho", rho, allow_zero=True)
        check_choice("restore", restore, RESTORE_MODES,
                     hint='Use "exact", or "subtract" to reproduce a run trained before this option existed.')
        if not (isinstance(base_optimizer, type) and issubclass(base_optimizer, torch.optim.Optimizer)):
            raise TypeError(
                "Expected argument `base_optimizer` to be a torch.optim.Optimizer class such as "
                f"torch.optim.SGD, but got {base_optimizer!r}. Pass the class, not an instance."
            )
        super().__init__(params, dict(rho=rho, adaptive=adaptive, **kwargs))
        self.restore = restore
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

    def _is_perturbed(self) -> bool:
        key = _SAVED[self.restore]
        return any(key in state for state in self.state.values())

    def _check_can_perturb(self) -> None:
        """Raise if the weights are already at ``w + e(w)`` (``first_step`` twice in a row)."""
        if self._is_perturbed():
            raise RuntimeError(
                f"{type(self).__name__}.first_step was called again before second_step: the weights are still "
                "at w + e(w), and a second perturbation would be taken from there. Call second_step() after "
                "the backward pass at the perturbed point, then first_step() for the next batch."
            )

    def _perturb(self, p: torch.Tensor, e_w: torch.Tensor) -> None:
        """Move ``p`` to ``p + e_w``, keeping what :meth:`second_step` needs to come back."""
        if self.restore == "exact":
            self.state[p]["w"] = p.clone()
        else:
            self.state[p]["e_w"] = e_w
        p.add_(e_w)  # climb to the local maximum w + e(w)

    @torch.no_grad()
    def _return_to_w(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                saved = self.state[p].pop(_SAVED[self.restore], None)
                if saved is None:
                    continue
                if self.restore == "exact":
                    p.copy_(saved)  # back to w, bit for bit
                else:
                    p.sub_(saved)  # back to w up to rounding (the stored runs' arithmetic)

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        """Move the weights to ``w + e(w)``, keeping what :meth:`second_step` needs to return to ``w``."""
        self._check_can_perturb()
        grad_norm = self._grad_norm()
        for group in self.param_groups:
            scale = group["rho"] / (grad_norm + 1e-12)
            for p in group["params"]:
                if p.grad is None:
                    continue
                self._perturb(p, (torch.pow(p, 2) if group["adaptive"] else 1.0) * p.grad * scale.to(p))
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        """Return to ``w`` and take the base optimizer's step with the gradient from ``w + e(w)``."""
        if not self._is_perturbed():
            raise RuntimeError(
                f"{type(self).__name__}.second_step was called without first_step, so there is no perturbation "
                "to undo and the gradient was not taken at w + e(w). Per batch: backward at w, first_step(), "
                "backward at w + e(w), second_step(); or use step(closure)."
            )
        self._return_to_w()
        self.base_optimizer.step()  # the sharpness-aware update
        # LR schedulers check that `step()` ran before them; first_step + second_step is a step too.
        self._opt_called = True
        if zero_grad:
            self.zero_grad()

    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor:  # type: ignore[override]
        """Full SAM update. ``closure`` must do a full forward-backward pass and return the loss
        (gradients at ``w`` must already be there from the caller's first backward). If the closure
        raises, the weights are returned to ``w`` and no step is taken. (Unlike ``Optimizer.step``, the
        closure is required and its loss tensor returned, hence the narrower signature.)"""
        if closure is None:
            raise ValueError(
                "SAM.step needs a closure that recomputes the loss, calls backward() and returns the loss, "
                "e.g. `def closure(): loss = loss_fn(model(x), y); loss.backward(); return loss`; or call "
                "first_step() and second_step() yourself."
            )
        closure = torch.enable_grad()(closure)
        self.first_step(zero_grad=True)
        try:
            loss = closure()
        except BaseException:
            self._return_to_w()
            raise
        self.second_step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["base_optimizer"] = self.base_optimizer.state_dict()
        state["restore"] = self.restore
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        base = state_dict.pop("base_optimizer", None)
        restore = state_dict.pop("restore", self.restore)  # none in states saved before the option existed
        if base is None:
            raise ValueError(
                "This SAM state_dict has no 'base_optimizer' entry, so the momentum buffers are missing "
                "and the run cannot resume exactly. Save it with sharpkit.optim.SAM.state_dict()."
            )
        if restore != self.restore:
            raise ValueError(
                f"This state_dict was saved with restore={restore!r}, but this {type(self).__name__} has "
                f"restore={self.restore!r}, so the resumed run would not continue the saved one exactly. "
                f"Construct the optimizer with restore={restore!r}."
            )
        super().load_state_dict(state_dict)
        self.base_optimizer.load_state_dict(base)
        self.param_groups = self.base_optimizer.param_groups


_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


@contextlib.contextmanager
def frozen_batchnorm_stats(model: nn.Module) -> Iterator[None]:
    """Within the block, the BatchNorm layers of ``model`` normalise as before (with the batch's
    statistics in training mode) but leave ``running_mean``, ``running_var`` and ``num_batches_tracked``
    untouched; meant for SAM's second forward pass, at ``w + e(w)`` (module docstring).

    It switches ``track_running_stats`` off for the block (torch's BatchNorm then updates no buffer) and
    back on afterwards, also when the block raises. sharpkit's trainer does not use it: in its runs both
    passes update the statistics.

    Examples:
        >>> import torch
        >>> import torch.nn.functional as F
        >>> from sharpkit.optim import SAM, frozen_batchnorm_stats
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
        >>> optimizer = SAM(model.parameters(), torch.optim.SGD, lr=0.1)
        >>> x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
        >>> F.cross_entropy(model(x), y).backward()
        >>> optimizer.first_step(zero_grad=True)
        >>> with frozen_batchnorm_stats(model):
        ...     F.cross_entropy(model(x), y).backward()  # at w + e(w): no statistics from here
        >>> optimizer.second_step(zero_grad=True)
        >>> model[1].num_batches_tracked, model[1].track_running_stats  # one update: the pass at w
        (tensor(1), True)
    """
    layers = [m for m in model.modules() if isinstance(m, _BATCH_NORMS) and m.track_running_stats]
    for layer in layers:
        layer.track_running_stats = False
    try:
        yield
    finally:
        for layer in layers:
            layer.track_running_stats = True
