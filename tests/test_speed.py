"""The machine's speed (coach.train.speed): precision and memory layout chosen by timing
this machine's own steps, recorded in the run, repeated on resume; bf16 trains on a CPU."""
import itertools
import types

import pytest
import torch

import coach
from coach.train import checkpoint as ckpt
from coach.train import speed as S

CONV = {"data": {"name": "digits"}, "model": {"name": "convnet", "width": 8, "depth": 1},
        "train": {"epochs": 1, "progress": False, "batch_size": 64, "monitor_every": 0}}


class Clock:
    """A fake timer: each training step of a variant takes what `cost` says (read per call pair)."""

    def __init__(self, cost):
        self.cost, self.t, self.calls = cost, 0.0, 0

    def __call__(self):
        self.calls += 1
        if self.calls % 2 == 0:  # the end of a step: advance by the current variant's price
            self.t += self.cost[self.variant]
        return self.t


def planned(cfg, cost, total_steps=10_000, budget=None):
    """plan_speed with a fake clock that charges each variant its price."""
    data = coach.load_data(cfg.data, 0)
    model = coach.build_model(cfg.model, data.input_shape, data.num_classes, cfg.regularize, data.preprocess)
    clock = Clock(cost)
    order = iter(S.candidates(cfg, model, torch.device("cpu")))
    real = S.step_seconds

    def step_seconds(net, opt, loss_fn, batches, amp=None, watch=S.Stopwatch()):
        clock.variant = S.variant_name(*next(order))
        return real(net, opt, loss_fn, batches, amp, S.Stopwatch(watch.steps, watch.warmup, watch.max_seconds, clock))

    S.step_seconds, saved = step_seconds, S.step_seconds
    try:
        return S.plan_speed(cfg, model, data, torch.device("cpu"), total_steps=total_steps, budget=budget)
    finally:
        S.step_seconds = saved


def test_a_stalling_step_counts_in_the_mean_over_a_long_enough_window():
    """Threads that wait on a busy core stall one step in a few by ~100x: a median of a few
    steps hides that, the mean over a window of `min_seconds` counts it."""
    net = torch.nn.Linear(4, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    stalls = itertools.cycle([0.001, 0.001, 0.001, 0.1])  # every fourth step stalls

    class Stalling:
        t, calls = 0.0, 0

        def __call__(self):
            self.calls += 1
            if self.calls % 2 == 0:
                self.t += next(stalls)
            return self.t

    def batches():
        while True:
            yield torch.randn(8, 4), torch.randint(0, 2, (8,))

    loss = torch.nn.functional.cross_entropy
    clock = Stalling()
    assert S.step_seconds(net, opt, loss, batches(), watch=S.Stopwatch(3, 0, timer=clock)) == 0.001
    clock = Stalling()
    seconds = S.step_seconds(net, opt, loss, batches(), watch=S.Stopwatch(3, 0, timer=clock, min_seconds=1.0,
                                                                           mean=True))
    assert clock.calls // 2 >= 36 and seconds == pytest.approx((3 * 0.001 + 0.1) / 4, rel=0.1)  # 1 s of steps


def test_a_steps_price_includes_making_its_batch():
    """Gathering, augmenting and laying out the batch are part of a step's price: timed from after
    the batch was made, a floor with 2-px crops was priced at 56-60 ms a step and trained at
    64-67 ms (part of why the final's epochs took 1.04-1.22x their price in five sessions)."""
    net = torch.nn.Linear(4, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    clock = types.SimpleNamespace(t=0.0)

    def batches():
        while True:
            clock.t += 0.05  # an augmentation that takes 50 ms a batch
            yield torch.randn(8, 4), torch.randint(0, 2, (8,))

    seconds = S.step_seconds(net, opt, torch.nn.functional.cross_entropy, batches(),
                             watch=S.Stopwatch(3, 1, timer=lambda: clock.t))
    assert seconds == pytest.approx(0.05)


def test_the_fastest_variant_is_chosen_and_noise_keeps_fp32(monkeypatch):
    monkeypatch.setattr(S, "native_bf16", lambda d: True)
    cfg = coach.make_config(CONV)
    fast = {"fp32": 0.10, "fp32 channels-last": 0.08, "bf16": 0.06, "bf16 channels-last": 0.04}
    speed = planned(cfg, fast)
    assert (speed.precision, speed.channels_last) == ("bf16", True) and "2.50x fp32" in speed.why
    assert set(speed.measured) == set(fast)
    # within the timing noise of fp32 (under 5% faster): fp32 stays
    close = {"fp32": 0.100, "fp32 channels-last": 0.099, "bf16": 0.098, "bf16 channels-last": 0.097}
    assert (planned(cfg, close).precision, planned(cfg, close).channels_last) == ("fp32", False)


def test_what_the_config_fixes_is_not_timed(monkeypatch):
    monkeypatch.setattr(S, "native_bf16", lambda d: True)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3))
    mlp = torch.nn.Sequential(torch.nn.Linear(4, 4))
    c = coach.make_config(CONV)
    assert S.candidates(c, model, torch.device("cpu")) == list(itertools.product(["fp32", "bf16"], [False, True]))
    assert S.candidates(c, mlp, torch.device("cpu")) == [("fp32", False), ("bf16", False)]  # no layout to gain
    fixed = c.replace(**{"train.precision": "fp32", "train.channels_last": True})
    assert S.candidates(fixed, model, torch.device("cpu")) == [("fp32", True)]
    monkeypatch.setattr(S, "native_bf16", lambda d: False)  # emulated bf16 is slow: not a candidate
    assert S.candidates(c, mlp, torch.device("cpu")) == [("fp32", False)]


def test_a_short_run_is_not_worth_timing(monkeypatch):
    monkeypatch.setattr(S, "native_bf16", lambda d: True)
    cfg = coach.make_config(CONV)
    cost = {"fp32": 0.01, "fp32 channels-last": 0.005, "bf16": 0.005, "bf16 channels-last": 0.001}
    short = planned(cfg, cost, total_steps=100)  # 100 steps of 10 ms: 1 s, under MIN_RUN_SECONDS
    assert short.precision == "fp32" and list(short.measured) == ["fp32"] and "short" in short.why
    assert planned(cfg, cost, budget=5.0).measured == {}  # a 5 s budget: nothing timed at all


def test_timing_leaves_the_model_and_the_random_streams_as_they_were(monkeypatch):
    monkeypatch.setattr(S, "native_bf16", lambda d: True)
    cfg = coach.make_config(CONV)
    data = coach.load_data(cfg.data, 0)
    model = coach.build_model(cfg.model, data.input_shape, data.num_classes, cfg.regularize, data.preprocess)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(3)
    rng = ckpt.rng_state()
    S.plan_speed(cfg, model, data, torch.device("cpu"), total_steps=10**6)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng["torch"])


@pytest.mark.skipif(not S.native_bf16(torch.device("cpu")), reason="this CPU has no native bf16")
def test_bf16_channels_last_trains_on_a_cpu_as_well_as_fp32(tmp_path):
    base = coach.make_config(CONV).replace(**{"train.epochs": 4, "optim.name": "adamw", "optim.lr": 3e-3})
    fp32 = coach.fit(base.replace(**{"train.precision": "fp32", "train.channels_last": False}), run_dir=tmp_path / "a")
    fast = coach.fit(base.replace(**{"train.precision": "bf16", "train.channels_last": True}), run_dir=tmp_path / "b")
    assert fast.summary["warnings"] == [] and fast.config.train.precision == "bf16"
    assert fast.model.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    acc = lambda r: r.summary["final"]["val_acc"]  # noqa: E731
    assert acc(fp32) > 0.85 and acc(fast) >= acc(fp32) - 0.03  # within one standard error of 143 examples


def test_auto_is_resolved_in_the_run_and_kept_on_resume(tmp_path, monkeypatch):
    monkeypatch.setattr(S, "MIN_RUN_SECONDS", 0.0)  # time even this small run
    monkeypatch.setattr(S, "plan_speed", lambda *a, **k: S.Speed("fp32", True, {"fp32": 1.0}, "stub"))
    import coach.train.loop as L
    monkeypatch.setattr(L, "plan_speed", S.plan_speed)
    run = coach.fit(coach.make_config(CONV), run_dir=tmp_path / "r")
    assert run.config.train.channels_last is True and run.summary["speed"]["why"] == "stub"
    # a resume reads the resolved values from config.yaml: nothing is timed again
    monkeypatch.setattr(L, "plan_speed", lambda *a, **k: pytest.fail("timed again on resume"))
    (tmp_path / "r" / "summary.json").unlink()
    coach.fit(resume=tmp_path / "r")
