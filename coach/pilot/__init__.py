"""The autopilot: the whole recipe under a time budget (`coach.autopilot`; the stages in
`coach.pilot.pilot`).

  session  the session directory, its stage log and its clock
  recipe   the data section and the lectures' recipe for the data (the floor)
  cost     seconds per step of each model size, measured on this machine
  plan     pure planners: epochs needed, model size, ensemble members, which decisions the time
           can judge, the judgement (extrapolated gains against paired noise)
  decide   the decision runs: each option trained to the end of its own schedule at two lengths
  choose   best / EMA weights, test-time views, ensembles, decided on validation; the one test
  page     the session's report.html
  result   what coach.autopilot returns
  pilot    the stages, in order
"""
from coach.pilot.pilot import autopilot
from coach.pilot.recipe import data_section, plain_recipe

__all__ = ["autopilot", "data_section", "plain_recipe"]
