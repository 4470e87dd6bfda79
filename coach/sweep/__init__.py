"""Hyperparameter search (`coach.search`): random, grid, TPE and coarse-to-fine on Optuna, with a
command center; learning-curve extrapolation (`curves`)."""
from coach.sweep.engine import PRUNERS, STRATEGIES, SearchInterrupted, open_storage, search, work
from coach.sweep.space import Dim, grid_points, narrow, parse_dim, parse_space

__all__ = ["PRUNERS", "STRATEGIES", "SearchInterrupted", "open_storage", "search", "work", "Dim", "grid_points",
           "narrow", "parse_dim", "parse_space"]
