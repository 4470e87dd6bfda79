"""The autopilot: the whole recipe under a time budget (see `coach.autopilot.pilot`).

  session  the session directory, its stage log and its clock
  recipe   the data section and the plain recipe (the floor)
  cost     seconds per step of each model size, measured on this machine
  plan     pure planners: epochs needed, model size, compute-bound or not, what the search can decide
  trials   the search stage: the plain recipe's trunk, its curves, the regularization rungs
  choose   EMA / test-time views / ensemble decided on validation; the one test
  page     the session's report.html
  pilot    the stages, in order
"""
from coach.autopilot.pilot import autopilot
from coach.autopilot.recipe import data_section, plain_recipe

__all__ = ["autopilot", "data_section", "plain_recipe"]
