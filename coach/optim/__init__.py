"""Optimizers, learning-rate schedules and regularizers."""
from coach.optim.optimizers import build_optimizer, param_groups, split_decay
from coach.optim.regularizers import penalty
from coach.optim.schedules import Plateau, cycle_end, lr_factor

__all__ = ["build_optimizer", "param_groups", "split_decay", "penalty", "Plateau", "cycle_end", "lr_factor"]
