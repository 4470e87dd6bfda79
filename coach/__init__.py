"""coach: train neural networks the way CS231n teaches it, and babysit the training.

Importing coach registers every building block, so config names always resolve.
"""
from coach import data, nn, optim  # noqa: F401  (registers sources, models, optimizers...)
from coach.config import Config, load_config, make_config
from coach.data import load_data
from coach.errors import UserError
from coach.nn import build_model, gradcheck, init_report
from coach.notebook import autopilot, check, fit, search  # results that show themselves in a notebook
from coach.train import Run, evaluate_model
from coach.version import __version__
from coach.watch import watch

__all__ = ["Config", "load_config", "make_config", "UserError", "load_data", "build_model", "gradcheck",
           "init_report", "__version__", "Run", "evaluate_model", "fit", "check", "search", "autopilot", "watch"]
