"""Sharpness-aware optimizers following the ``torch.optim.Optimizer`` contract, and the FAM regulariser."""
from .fam import FamLoss, classifier_relative_flatness, fam_loss, fam_penalty, simplified_fam_penalty
from .sam import SAM
from .variants import ASAM, AverageSAM, kwon_param_groups

__all__ = ["ASAM", "SAM", "AverageSAM", "FamLoss", "classifier_relative_flatness", "fam_loss", "fam_penalty",
           "kwon_param_groups", "simplified_fam_penalty"]
