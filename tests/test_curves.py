"""Learning-curve extrapolation on synthetic curves with known ends (coach.sweep.curves)."""
import math

import numpy as np
import pytest

from coach.sweep import curves as C


def law(a, b, c):
    return lambda length: a + b * length ** -c


def test_two_points_with_the_true_exponent_recover_the_end_exactly():
    f = law(0.06, 0.08, 0.5)
    e = C.extrapolate([1.0, 2.0], [f(1.0), f(2.0)], 16.0, c=0.5)
    assert e.value == pytest.approx(f(16.0), abs=1e-12)
    assert e.law.a == pytest.approx(0.06) and e.law.b == pytest.approx(0.08)


def test_three_points_choose_the_exponent_and_predict_far_out():
    for c in (0.3, 0.7, 1.2):
        f = law(0.05, 0.1, c)
        lengths = [1.0, 2.0, 4.0]
        e = C.extrapolate(lengths, [f(x) for x in lengths], 32.0)
        assert e.law.c == pytest.approx(c, abs=0.051)
        assert e.value == pytest.approx(f(32.0), abs=2e-3)
        # a straight read of the longest point would be far off: the curve is still falling there
        assert abs(f(4.0) - f(32.0)) > 5 * abs(e.value - f(32.0))


def test_the_ranking_at_the_end_is_not_the_ranking_at_the_start():
    """Regularization loses short and wins long: the crossing is predicted from the short runs."""
    plain, regular = law(0.070, 0.03, 0.5), law(0.055, 0.06, 0.5)
    lengths = [1.0, 2.0]
    assert plain(2.0) < regular(2.0)  # at the measured lengths the plain arm looks better
    p = C.extrapolate(lengths, [plain(x) for x in lengths], 20.0)
    r = C.extrapolate(lengths, [regular(x) for x in lengths], 20.0)
    assert r.value < p.value and regular(20.0) < plain(20.0)


def test_the_noise_is_carried_and_grows_with_the_distance():
    lengths, ses = [1.0, 2.0], [0.003, 0.003]
    near = C.extrapolate(lengths, [0.10, 0.09], 2.0, ses)
    far = C.extrapolate(lengths, [0.10, 0.09], 64.0, ses)
    assert near.se == pytest.approx(0.003, rel=1e-6)  # at a measured length: that point's own error
    assert far.se > 2 * near.se
    # the weights reproduce the prediction: it is linear in the measured values
    w = C.prediction_weights(lengths, 64.0, far.law.c)
    assert float(w @ np.array([0.10, 0.09])) == pytest.approx(far.value)
    assert far.se == pytest.approx(math.sqrt(float(np.sum((w * 0.003) ** 2))))


def test_noisy_points_with_a_simulated_spread_cover_the_truth():
    rng = np.random.default_rng(0)
    f, lengths, target, se = law(0.06, 0.06, 0.5), [2.0, 4.0, 8.0], 32.0, 0.002
    inside = 0
    for _ in range(400):
        e = C.extrapolate(lengths, [f(x) + rng.normal(0, se) for x in lengths], target, [se] * 3, c=0.5)
        inside += abs(e.value - f(target)) <= 2 * e.se
    assert inside / 400 > 0.9  # a 2-SE band holds the truth about 95% of the time


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError):
        C.fit([1.0], [0.1])
    with pytest.raises(ValueError):
        C.fit([1.0, 1.0], [0.1, 0.2])
