"""Training: the fit loop, callbacks, checkpoints, losses and the run directory."""
from coach.train.callbacks import Callback
from coach.train.loop import Trainer, evaluate_model, fit, pick_device
from coach.train.run import Run

__all__ = ["Callback", "Trainer", "evaluate_model", "fit", "pick_device", "Run"]
