"""Sharpness-aware optimizers following the ``torch.optim.Optimizer`` contract, and the FAM regulariser."""
from .fam import FamLoss, classifier_relative_flatness, fam_loss, fam_penalty, simplified_fam_penalty
from .sam import RESTORE_MODES, SAM, frozen_batchnorm_stats
from .variants import ASAM, AverageSAM, kwon_param_groups

__all__ = ["ASAM", "RESTORE_MODES", "SAM", "AverageSAM", "FamLoss", "classifier_relative_flatness", "fam_loss",
           "fam_penalty", "frozen_batchnorm_stats", "kwon_param_groups", "simplified_fam_penalty"]
