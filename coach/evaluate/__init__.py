"""Evaluation: ensembles, snapshot ensembles, Polyak averaging, test-time augmentation, transfer."""
from coach.data.views import views
from coach.evaluate.runs import evaluate_runs, format_table
from coach.evaluate.transfer import choose_mode, freeze_batchnorm, transfer, zoo
from coach.train.predict import ensemble, predict_proba, recompute_bn, scores

__all__ = ["ensemble", "predict_proba", "recompute_bn", "scores", "evaluate_runs", "format_table", "choose_mode",
           "freeze_batchnorm", "transfer", "zoo", "views"]
