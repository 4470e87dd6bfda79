"""coach: train neural networks the way CS231n teaches it, and babysit the training.

Importing coach registers every building block, so config names always resolve.
"""
from coach.config import Config, load_config, make_config
from coach.errors import UserError
from coach import data, nn, optim  # noqa: F401  (registers sources, models, optimizers...)
from coach.data import load_data
from coach.nn import build_model, gradcheck, init_report

from coach.version import __version__
__all__ = ["Config", "load_config", "make_config", "UserError", "load_data", "build_model", "gradcheck",
           "init_report", "__version__"]

from coach.train import Run, evaluate_model  # noqa: E402
from coach.watch import watch  # noqa: E402
# fit, check, search and autopilot as a notebook wants them: results that show themselves (coach.notebook);
# coach.autopilot and coach.search name the functions (their packages are imported first, then rebound)
from coach.notebook import autopilot, check, fit, search  # noqa: E402

__all__ += ["Run", "evaluate_model", "fit", "check", "search", "autopilot", "watch"]
