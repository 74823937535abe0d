r"""Two variants of SAM with the same two-pass contract as :class:`sharpkit.optim.SAM`.

Both perturb the weights in ``first_step``, and ``second_step`` returns to ``w`` (exactly, or by
subtraction with ``restore="subtract"``) and lets the base optimizer step with the gradient taken at the
perturbed point; calling either step out of turn raises, and ``state_dict()`` carries the base
optimizer's state (all inherited from :class:`~sharpkit.optim.SAM`).

ASAM (Kwon, Kim, Park and Choi, "ASAM: Adaptive Sharpness-Aware Minimization for Scale-Invariant
Learning of Deep Neural Networks", ICML 2021): with the normalisation operator
:math:`T_w = \mathrm{diag}(|w| + \eta)` (elementwise),

.. math::
    \epsilon(w) = \rho\, \frac{T_w^2\, \nabla L(w)}{\|T_w \nabla L(w)\|_2}.

:math:`\eta` keeps zero weights movable. The authors' code applies :math:`T_w` to every parameter
whose name contains ``"weight"`` and uses :math:`T_w = 1` (no eta) for the others (biases); the
optimizer does not see names, so this is a parameter-group option (``adaptive``), and
:func:`~sharpkit.optim.kwon_param_groups` builds the groups the authors' way. Their defaults: rho = 0.5, eta = 0.01.
(``SAM(adaptive=True)`` is the eta = 0 special case applied to every parameter.)

Average SAM (the random-perturbation ablation of Foret, Kleiner, Mobahi and Neyshabur,
"Sharpness-Aware Minimization for Efficiently Improving Generalization", ICLR 2021, app. C.5; Boca,
Cross, Holm and Korkmaz, "Towards an *Even Better* Understanding of Sharpness-Aware Minimisation",
University of Cambridge course report, 2023, sec. 3, whose formula's :math:`\|z\|_2^2` is a typo for
the fixed Euclidean norm they describe): a random perturbation of fixed norm instead of the gradient direction,

.. math::
    \epsilon = \rho\, \frac{\mathbf z}{\|\mathbf z\|_2}, \qquad \mathbf z \sim \mathcal N(0, I),

over all parameters of the optimizer that require gradients (one global norm; per-group rho).
``first_step`` does not read gradients, so a loop may call it before its only forward-backward pass
(one pass per step instead of two); the SAM-style loop with two passes also works.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..utils.validation import check_positive
from .sam import SAM

__all__ = ["ASAM", "AverageSAM", "kwon_param_groups"]


def kwon_param_groups(model: nn.Module) -> list[dict[str, Any]]:
    """Parameter groups as the ASAM authors' code treats them: parameters whose name contains
    ``"weight"`` are adaptive (:math:`T_w = |w| + \\eta`), the others (biases) are not (:math:`T_w = 1`).

    Examples:
        >>> import torch
        >>> from sharpkit.optim import kwon_param_groups
        >>> groups = kwon_param_groups(torch.nn.Linear(4, 3))
        >>> [(len(group["params"]), group["adaptive"]) for group in groups]  # [weight], [bias]
        [(1, True), (1, False)]
    """
    adaptive: list[nn.Parameter] = []
    plain: list[nn.Parameter] = []
    for name, parameter in model.named_parameters():
        (adaptive if "weight" in name else plain).append(parameter)
    groups = [{"params": adaptive, "adaptive": True}]
    if plain:
        groups.append({"params": plain, "adaptive": False})
    return groups


class ASAM(SAM):
    """Adaptive SAM with the :math:`\\eta` of Kwon et al. (module docstring).

    Args:
        params: parameters or groups; a group's ``"adaptive"`` (default True) selects
            :math:`T_w = |w| + \\eta` or :math:`T_w = 1`, its ``"eta"`` and ``"rho"`` override the defaults.
        base_optimizer: optimizer class to wrap (e.g. ``torch.optim.SGD``).
        rho: radius of the (normalised) neighbourhood (Kwon et al.: 0.5 on CIFAR-10 with SGD).
        eta: offset of the normalisation operator (Kwon et al.: 0.01).
        restore: ``"exact"`` or ``"subtract"``, as for :class:`~sharpkit.optim.SAM`.
        **kwargs: passed to ``base_optimizer``.

    Examples:
        >>> import torch
        >>> import torch.nn.functional as F
        >>> from sharpkit.optim import ASAM, kwon_param_groups
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Linear(4, 3)
        >>> x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
        >>> optimizer = ASAM(kwon_param_groups(model), torch.optim.SGD, rho=0.5, eta=0.01, lr=0.1)
        >>> F.cross_entropy(model(x), y).backward()
        >>> optimizer.first_step(zero_grad=True)
        >>> F.cross_entropy(model(x), y).backward()
        >>> optimizer.second_step(zero_grad=True)
        >>> [group["adaptive"] for group in optimizer.param_groups]  # weight: T = |w| + eta; bias: T = 1
        [True, False]
    """

    def __init__(self, params, base_optimizer: type[torch.optim.Optimizer], rho: float = 0.5,
                 eta: float = 0.01, restore: str = "exact", **kwargs: Any) -> None:
        check_positive("eta", eta, allow_zero=True)
        super().__init__(params, base_optimizer, rho=rho, adaptive=True, restore=restore, **kwargs)
        self.defaults["eta"] = eta
        for group in self.param_groups:
            group.setdefault("eta", eta)

    @staticmethod
    def _operator(p: torch.Tensor, group: dict[str, Any]) -> torch.Tensor | float:
        return p.abs() + group["eta"] if group["adaptive"] else 1.0

    @torch.no_grad()
    def _grad_norm(self) -> torch.Tensor:
        norms = [(self._operator(p, group) * p.grad).norm(p=2)
                 for group in self.param_groups for p in group["params"] if p.grad is not None]
        if not norms:
            raise RuntimeError("ASAM.first_step found no gradients: call loss.backward() before it.")
        device = norms[0].device
        return torch.stack([n.to(device) for n in norms]).norm(p=2)

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        """Move the weights to ``w + rho T^2 g / ||T g||``, keeping what ``second_step`` needs."""
        self._check_can_perturb()
        grad_norm = self._grad_norm()
        for group in self.param_groups:
            scale = group["rho"] / (grad_norm + 1e-12)
            for p in group["params"]:
                if p.grad is None:
                    continue
                operator = self._operator(p, group)
                self._perturb(p, operator * operator * p.grad * scale.to(p))
        if zero_grad:
            self.zero_grad()


class AverageSAM(SAM):
    """SAM with a random perturbation of norm rho (module docstring).

    Args:
        params: parameters or groups (a group's ``"rho"`` overrides the default).
        base_optimizer: optimizer class to wrap (e.g. ``torch.optim.SGD``).
        rho: norm of the perturbation (Boca et al. use 0.5 and 1.0: random directions raise the loss
            much less than the gradient direction).
        generator: ``torch.Generator`` for the perturbations (its state is saved in ``state_dict``);
            ``None`` uses the global RNG of each parameter's device.
        restore: ``"exact"`` or ``"subtract"``, as for :class:`~sharpkit.optim.SAM`.
        **kwargs: passed to ``base_optimizer``.

    Examples:
        >>> import torch
        >>> import torch.nn.functional as F
        >>> from sharpkit.optim import AverageSAM
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Linear(4, 3)
        >>> x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
        >>> optimizer = AverageSAM(model.parameters(), torch.optim.SGD, rho=0.5, lr=0.1,
        ...                        generator=torch.Generator().manual_seed(0))
        >>> optimizer.first_step()  # a random e of norm rho: no gradient needed
        >>> F.cross_entropy(model(x), y).backward()  # the only pass, at w + e
        >>> optimizer.second_step(zero_grad=True)
        >>> "generator_state" in optimizer.state_dict()  # a resumed run draws the same perturbations
        True
    """

    def __init__(self, params, base_optimizer: type[torch.optim.Optimizer], rho: float = 0.5,
                 generator: torch.Generator | None = None, restore: str = "exact", **kwargs: Any) -> None:
        super().__init__(params, base_optimizer, rho=rho, adaptive=False, restore=restore, **kwargs)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"Expected `generator` to be a torch.Generator or None, but got {generator!r}.")
        self.generator = generator

    def _noise(self, p: torch.Tensor) -> torch.Tensor:
        if self.generator is None:
            return torch.randn(p.shape, dtype=p.dtype, device=p.device)
        # Drawn on the generator's device so a CPU generator gives the same numbers on any device.
        return torch.randn(p.shape, dtype=p.dtype, device=self.generator.device,
                           generator=self.generator).to(p.device)

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        """Move the weights to ``w + rho z / ||z||`` (z standard normal, drawn parameter by parameter
        in group order); gradients are not needed."""
        self._check_can_perturb()  # before drawing: a refused call leaves the generator as it was
        draws = [(group, p, self._noise(p)) for group in self.param_groups for p in group["params"]
                 if p.requires_grad]
        if not draws:
            raise RuntimeError("AverageSAM.first_step found no parameter that requires gradients.")
        device = draws[0][2].device
        norm = torch.stack([z.norm(p=2).to(device) for _, _, z in draws]).norm(p=2)
        for group, p, z in draws:
            self._perturb(p, z * (group["rho"] / norm).to(p))
        if zero_grad:
            self.zero_grad()

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        if self.generator is not None:
            state["generator_state"] = self.generator.get_state()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        generator_state = state_dict.pop("generator_state", None)
        super().load_state_dict(state_dict)
        if generator_state is not None and self.generator is not None:
            self.generator.set_state(generator_state)
