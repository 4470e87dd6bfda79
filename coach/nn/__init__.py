"""Neural-network building blocks: activations, initialization, layers, models, checks."""
from coach.nn.activations import ACTIVATION_TYPES, Maxout, make_activation
from coach.nn.gradcheck import GradcheckResult, gradcheck
from coach.nn.init import initialize, lsuv
from coach.nn.init_report import InitReport, activation_stats, init_report
from coach.nn.layers import DropConnectLinear, Dropout, FractionalMaxPool, SpatialDropout, StochasticDepth
from coach.nn.models import CoachModel, build_model
from coach.nn.own import Own, OwnModel

__all__ = ["ACTIVATION_TYPES", "Maxout", "make_activation", "gradcheck", "GradcheckResult", "initialize", "lsuv",
           "init_report", "activation_stats", "InitReport", "Dropout", "SpatialDropout", "DropConnectLinear", "StochasticDepth",
           "FractionalMaxPool", "CoachModel", "build_model", "Own", "OwnModel"]
