"""What the autopilot predicts with, decided on validation (coach.pilot.choose): a tie on
accuracy is broken by the loss; what the chosen weights throw away is said."""
import torch

from coach.pilot.choose import Shortlist, early_note, gap, tie_note, weights_row
from coach.data import Split


class Data:
    def __init__(self, y):
        self.val = Split(torch.zeros(len(y), 1), torch.tensor(y))


def probs(correct_conf, n=4):
    """Probabilities over 2 classes that put `correct_conf` on the true class 0 of every example."""
    return torch.tensor([[correct_conf, 1 - correct_conf]] * n)


def test_a_tie_on_accuracy_goes_to_the_lower_validation_loss():
    short = Shortlist(Data([0, 0, 0, 0]), per_example=1e-3, seconds=10.0)
    short.add("best weights", probs(0.6), 1, {"weights": "best"})
    short.add("EMA weights", probs(0.99), 1, {"weights": "ema"})  # as accurate (1.0), far surer
    short.add("EMA + TTA", probs(0.9), 2, {"weights": "ema", "tta": "flip"})
    pick = short.best()
    assert pick["name"] == "EMA weights" and all(r["acc"] == 1.0 for r in short.rows)
    assert "broken by the validation loss" in tie_note(short.rows, pick)
    # a full tie (accuracy and loss) keeps the first, i.e. the cheapest
    same = Shortlist(Data([0, 0]), 1e-3, 10.0)
    same.add("a", probs(0.8, 2), 1, {})
    same.add("b", probs(0.8, 2), 2, {})
    assert same.best()["name"] == "a" and tie_note(same.rows, same.best()).startswith(" (a tie")


def test_candidates_are_tried_only_while_they_fit_the_seconds():
    short = Shortlist(Data([0] * 100), per_example=0.01, seconds=2.5)  # 1 s a view of the split
    assert short.affords(2) and not short.affords(3)
    short.add("one", probs(0.7, 100), 2, {})
    assert not short.affords(1) and short.spent == 2.0


def test_weights_that_throw_away_most_of_the_training_say_why():
    assert "step 30 of 100 (30% of the training)" in early_note({"best": {"step": 30}, "steps": 100})
    assert early_note({"best": {"step": 80}, "steps": 100}) == ""


class Sign(torch.nn.Module):
    """Class 0 when the input's first value is positive: right on the unmoved images below and
    wrong on every view moved by a pixel, so views change the accuracy and one view does not."""

    def forward(self, x):
        s = x.flatten(1)[:, 0:1]
        return torch.cat([s, -s], 1) * 10


def test_the_gap_is_the_chosen_weights_through_one_view_as_the_projection_measured_it():
    x = torch.zeros(6, 1, 4, 4)
    x[:, 0, 0, 0] = 1.0  # the first pixel on: class 0 through the identity view only
    y = torch.zeros(6, dtype=torch.long)

    class D:
        train = Split(x, y)
        val = Split(x[:3], y[:3])
    rows = [{"name": "best weights", "acc": 0.75, "choice": {"weights": "best", "tta": "none", "ensemble": []}},
            {"name": "best weights + TTA translate", "acc": 0.2,
             "choice": {"weights": "best", "tta": "translate", "ensemble": []}}]
    pick = rows[1]
    assert weights_row(rows, pick) is rows[0]
    g = gap(Sign(), weights_row(rows, pick), D, pad=1)
    # training accuracy through one view (1.0, where the translated views would give ~0.2), minus
    # the weights' one-view validation accuracy: not the views' 0.2
    assert g["train_acc"] == 1.0 and abs(g["gap"] - 0.25) < 1e-9
