"""Sharpness-aware optimizers following the ``torch.optim.Optimizer`` contract, and the FAM regulariser.

:class:`SAM` (Foret et al., ICLR 2021; ``adaptive=True``: Kwon et al., ICML 2021), :class:`ASAM` and
:class:`AverageSAM` share one two-pass contract (``first_step``, ``second_step``); :func:`fam_loss` adds the
FAM penalty (Adilova et al., 2023) to a training loss.

Examples:
    >>> from sharpkit.optim import RESTORE_MODES
    >>> RESTORE_MODES  # how second_step returns to w: copy the saved w, or subtract e(w)
    ('exact', 'subtract')
"""
from .fam import FamLoss, classifier_relative_flatness, fam_loss, fam_penalty, simplified_fam_penalty
from .sam import RESTORE_MODES, SAM, frozen_batchnorm_stats
from .variants import ASAM, AverageSAM, kwon_param_groups

__all__ = ["ASAM", "RESTORE_MODES", "SAM", "AverageSAM", "FamLoss", "classifier_relative_flatness", "fam_loss",
           "fam_penalty", "frozen_batchnorm_stats", "kwon_param_groups", "simplified_fam_penalty"]
