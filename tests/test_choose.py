"""What the autopilot predicts with, decided on validation (coach.pilot.choose): a tie on
accuracy is broken by the loss; what the chosen weights throw away is said."""
import pytest
import torch

from coach.config import make_config
from coach.pilot.choose import BN_EXAMPLES, Shortlist, early_note, gap, planned_seconds, tie_note, weights_row
from coach.data import Split


class Data:
    kind = "image"

    def __init__(self, y, train=0, test=0):
        split = lambda n: Split(torch.zeros(n, 1, 28, 28), torch.zeros(n, dtype=torch.long))  # noqa: E731
        self.val = Split(torch.zeros(len(y), 1, 28, 28), torch.tensor(y))
        self.train, self.test = split(train), split(test)


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


def test_a_candidate_is_tried_only_when_the_longer_test_it_would_need_fits():
    """Each candidate is priced as if chosen: its validation passes and the test passes it adds
    (k views: k passes over the test split). Kept back for the most views whether or not they
    were tried, a 3-minute session's choose could not afford the EMA weights, and its test,
    through one view, left 12 s unspent."""
    short = Shortlist(Data([0] * 100, test=200), per_example=0.01, seconds=9.5)  # 1 s a view of val, 2 of test
    assert short.total == 2.0  # the test through one view, always
    short.add("best weights", probs(0.7, 100), 1, {})
    assert short.total == 3.0 and short.affords(1, extra=5.0)
    assert not short.affords(3, test_views=3)  # 3 s of validation and 4 more of test: 10 > 9.5
    assert short.affords(3)  # the same views priced without the test they need (the old rule) would fit
    short.add("an ensemble of two", probs(0.7, 100), 1, {}, test_views=2)
    assert short.total == 6.0 and short.test_views == 2


def test_the_reserve_holds_the_candidates_choose_will_try_and_no_more():
    """The end of a session keeps what its candidates cost, tried in choose's order while they
    fit, each priced with its test; one that does not fit is left out, not half paid for."""
    cfg = make_config({"augment": {"crop_padding": 2}})  # test-time translations: 5 views
    data = Data([0] * 1000, train=8000, test=2000)
    pe = 1e-3  # 1 s a view of val, 2 of test, 5 for the EMA weights' batch norm
    always = 1.0 + 1.0 + 2.0  # the best weights, their training accuracy (the gap), the test through one view
    ema = 1.0 + BN_EXAMPLES * pe
    translations = 5 * 1.0 + 4 * 2.0  # five views of val, and four more passes over the test
    assert planned_seconds(cfg, data, pe, 100.0) == pytest.approx(always + ema + translations)
    # 20 s cannot hold the translations: the reserve is the EMA weights', not the 20 s
    assert planned_seconds(cfg, data, pe, 20.0) == pytest.approx(always + ema)
    assert planned_seconds(cfg, data, pe, 20.0, views=False) == planned_seconds(cfg, data, pe, 20.0)
    assert planned_seconds(cfg, data, pe, 100.0, ema=False) == pytest.approx(always + translations)
    # a runner-up to ensemble with, through the translations' five views: 5 s of val and 10 of test more
    assert planned_seconds(cfg, data, pe, 100.0, others=1) == pytest.approx(always + ema + translations + 15.0)


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
