"""The autopilot's decisions, on plain numbers: which options each kind of data gets, which
the budget can judge at a length that counts, the judgement (extrapolated gains against paired
noise), the projected gap, the floor's noise margin."""
import math

import pytest

from coach.pilot import judge as J


def test_options_by_kind_of_data():
    names = lambda opts: [o.name for o in opts]  # noqa: E731
    image = J.options_for("image", (1, 28, 28), 1e-4, wider=48)
    assert names(image) == ["no augmentation", "+ mirror flips", "no label smoothing", "width 48"]
    assert image[0].overrides == {"augment.crop_padding": 0} and image[1].overrides == {"augment.hflip": True}
    assert J.options_for("signal", (1, 40), 1e-4, None)[0].overrides == {"augment.shift": 0}
    assert "+ mirror flips" not in names(J.options_for("signal", (1, 40), 1e-4, None))
    vector = J.options_for("vector", (64,), 1e-4, wider=None)
    assert names(vector) == ["no label smoothing", "weight decay 0.001"]
    # the gap orders them: regularization first for a floor that overfits, capacity first otherwise
    assert J.order_options(image, overfitting=True)[0].name == "+ mirror flips"
    assert [o.name for o in J.order_options(image, overfitting=False)][:3] == ["no augmentation", "no label smoothing", "width 48"]


def test_decisions_use_only_the_time_the_final_does_not_need():
    # 1000 s to train, the final needs 400 s: 300 s (the share cap) for options, two lengths per arm
    plan = J.plan_decisions(4, 1000.0, 400.0, 0.01, most=3000.0)
    assert plan.seconds <= J.DECISION_SHARE * 1000 + 1e-9 and plan.final >= 400
    assert plan.lengths[1] == pytest.approx(2 * plan.lengths[0])
    assert plan.seconds == pytest.approx(1.5 * plan.arms * plan.lengths[1])
    assert plan.final / plan.lengths[1] <= J.MAX_EXTRAPOLATION  # judged at a length that counts
    assert 1 < plan.arms <= 5
    # the final needs everything: no decisions, every second trains
    none = J.plan_decisions(4, 1000.0, 1000.0, 0.01, most=3000.0)
    assert none.arms == 1 and none.seconds == 0 and none.final == 1000 and "every second trains" in none.why
    # spare time, but only runs far shorter than the final (1/20 of it): they would rank by speed of fitting
    far = J.plan_decisions(4, 1000.0, 960.0, 0.01, most=3000.0)
    assert far.arms == 1 and "1/8" in far.why
    # a small problem where the final can use only 20 s (MAX_FINAL_EPOCHS): half the rest goes to
    # decisions, at lengths close to the final's own (the other half to ensemble members)
    small = J.plan_decisions(3, 100.0, 10.0, 0.001, most=20.0)
    assert small.arms == 4 and small.seconds == pytest.approx(40) and small.final == 20.0
    assert small.final / small.lengths[1] <= 3
    # with two members the curves go to what one of them trains
    two = J.plan_decisions(3, 100.0, 10.0, 0.001, most=40.0, members=2)
    assert two.final <= 20.0 and two.final / two.lengths[1] <= J.MAX_EXTRAPOLATION


def runs(errors, lengths=(10.0, 20.0), n=10_000, train=0.99, seed=0):
    """Measured runs with the given validation errors. Arms err mostly on the same hard examples
    (one ranking of difficulty), each with a fifth of its mistakes of its own (`seed`)."""
    import random
    hard = list(range(n))
    random.Random(0).shuffle(hard)
    out = []
    for x, e in zip(lengths, errors):
        k = round(e * n)
        own = random.Random(seed).sample(hard[k:], k // 5) if seed else hard[k - k // 5:k]
        out.append(J.Measured(x, e, train, frozenset(hard[:k - k // 5]) | frozenset(own)))
    return out


def test_an_option_that_loses_short_and_wins_long_is_adopted():
    law = lambda a, b: lambda x: a + b * x ** -0.5  # noqa: E731
    floor, reg = law(0.070, 0.10), law(0.040, 0.25)  # regularization: worse at 10-20 s, better by 200 s
    lengths = (10.0, 20.0)
    assert reg(20.0) > floor(20.0) and reg(200.0) < floor(200.0)
    j = J.judge(runs([floor(x) for x in lengths]), {"reg": runs([reg(x) for x in lengths], seed=1)},
                {"reg": "regularization"}, 200.0, 10_000)
    assert j.adopted == ["reg"] and j.verdicts[0].gain == pytest.approx(floor(200.0) - reg(200.0), abs=2e-3)
    # judged at the measured length instead, the same runs would reject it
    short = J.judge(runs([floor(x) for x in lengths]), {"reg": runs([reg(x) for x in lengths], seed=1)},
                    {"reg": "regularization"}, 20.0, 10_000)
    assert short.adopted == []


def test_a_gain_within_the_noise_is_not_adopted_and_one_winner_per_group():
    floor = runs([0.10, 0.09], n=200)
    j = J.judge(floor, {"a": runs([0.10, 0.085], n=200, seed=1)}, {"a": "g"}, 40.0, 200)
    assert j.verdicts[0].gain > 0 and not j.verdicts[0].adopted  # 200 examples: 1 in 200 is noise
    big = J.judge(runs([0.20, 0.18]), {"a": runs([0.10, 0.08], seed=1), "b": runs([0.12, 0.10], seed=2)},
                  {"a": "aug", "b": "aug"}, 40.0, 10_000)
    assert big.adopted == ["a"]  # both beat the floor; one per group, the better
    # an arm that did not finish every length is not judged
    assert J.judge(floor, {"a": runs([0.1], n=200)}, {"a": "g"}, 40.0, 200).verdicts == []


def test_paired_standard_error_counts_only_disagreements():
    a = J.Measured(1.0, 0.1, 1.0, frozenset(range(100)))
    same = J.paired(a, a, 1000)
    assert same[0] == 0 and same[1] == pytest.approx(1 / 1000 / math.sqrt(1000))  # the floor of one example
    b = J.Measured(1.0, 0.09, 1.0, frozenset(range(10, 100)))  # right on 10 more, wrong on none new
    gain, se = J.paired(a, b, 1000)
    assert gain == pytest.approx(0.01) and se == pytest.approx(math.sqrt((0.01 - 0.0001) / 1000))


def test_the_gap_is_projected_to_the_final_length_not_read_early():
    # train accuracy climbs faster than validation: the gap at 10-20 s understates the final one
    floor = [J.Measured(10.0, 0.10, 0.92, frozenset()), J.Measured(20.0, 0.085, 0.95, frozenset())]
    gap, se, over = J.project_gap(floor, 200.0, 6000)
    assert gap > 0.95 - 0.915 and over and se > 0
    flat = [J.Measured(10.0, 0.10, 0.90, frozenset()), J.Measured(20.0, 0.09, 0.91, frozenset())]
    assert not J.project_gap(flat, 200.0, 6000)[2]


def test_noise_margin_is_one_standard_error():
    assert J.noise_margin(0.9, 6000) == pytest.approx(math.sqrt(0.9 * 0.1 / 6000))
    assert J.noise_margin(0.9, 100) > J.noise_margin(0.9, 10_000)


def test_the_noise_of_a_judgement_is_known_from_its_first_runs():
    """The standard error an option's extrapolated gain will carry is predicted from the paired
    standard error at one length: where both lengths are as noisy, it is the one `judge` reports,
    and it grows with how far the curves are extrapolated."""
    floor = runs([0.10, 0.10])
    option = [J.Measured(m.seconds, m.val_error, m.train_acc, frozenset(range(400, 400 + len(m.wrong))))
              for m in floor]  # as many mistakes, partly others, at both lengths: equal paired noise
    se = J.paired(floor[0], option[0], 10_000)[1]
    assert se == pytest.approx(J.paired(floor[1], option[1], 10_000)[1])
    for target in (40.0, 140.0):
        verdict = J.judge(floor, {"o": option}, {"o": "g"}, target, 10_000).verdicts[0]
        assert J.predicted_se(floor, se, target) == pytest.approx(verdict.se)
    assert J.predicted_se(floor, se, 140.0) > 2 * se > J.predicted_se(floor, se, 40.0) > se
