"""The cost model on a fake clock: a step's price is what the timer says, the ladder stops at
the first size the budget cannot afford, a busy machine gets fewer threads; and the session's
clock, which the budget promise is kept by."""
import json

import pytest
import torch

from coach.pilot import cost as C
from coach.pilot.session import Session, process_started
from coach.config import make_config
from coach.data import load_data
from coach.train.job import prepare
from coach.train.speed import Stopwatch


class FakeTimer:
    """Each reading advances `tick` seconds; `per_width` makes wider models slower."""

    def __init__(self, tick: float = 0.5):
        self.t, self.tick = 0.0, tick

    def __call__(self) -> float:
        self.t += self.tick
        return self.t


@pytest.fixture(scope="module")
def digits():
    cfg = make_config({"data": {"name": "digits"}, "model": {"name": "convnet", "width": 8},
                       "train": {"batch_size": 32, "progress": False}})
    return cfg, load_data(cfg.data)


def test_a_step_costs_what_the_clock_says(digits):
    cfg, data = digits
    c = C.time_config(prepare(cfg, data), Stopwatch(3, 1, timer=FakeTimer(0.5)))
    assert c.step == pytest.approx(0.5)  # two readings per step, 0.5 s apart
    n = min(4 * 128, len(data.val))  # the validation batches timed
    assert c.eval_example == pytest.approx(0.5 / n)
    assert c.width == 8 and c.params == sum(p.numel() for p in torch.nn.Module.parameters(
        __import__("coach").build_model(cfg.model, data.input_shape, 10, cfg.regularize, data.preprocess)))


def test_the_end_of_a_session_is_priced_as_prediction_runs(digits, tmp_path):
    """choose and the test predict on the CPU in fp32 NCHW (coach.train.predict), not as the trainer
    validates (bf16 channels-last here, or a GPU): their reserve is priced by a prediction pass.
    Priced by validation, a 10-minute session's choose and test took 44 s where 28 were left."""
    from coach.pilot.stages import REPORT_SECONDS, finish_seconds

    cfg, data = digits
    fast = cfg.replace(**{"train.precision": "bf16", "train.channels_last": True})
    c = C.time_config(prepare(fast, data), Stopwatch(3, 1, timer=FakeTimer(0.5)))
    assert c.predict_example == pytest.approx(0.5 / min(128, len(data.val)))  # a batch of eval_batch_size("cpu")
    s = Session(tmp_path, budget=1000.0, quiet=True)
    validated = C.Cost(8, 0.01, 1e-4, 1)  # an older session's cost: only the validation price
    predicted = C.Cost(8, 0.01, 1e-4, 1, predict_example=3e-4)
    passes = lambda cost: finish_seconds(s, cost, data, cfg) - 0.005 * 1000 - REPORT_SECONDS  # noqa: E731
    assert passes(predicted) == pytest.approx(3 * passes(validated)) and passes(validated) > 0
    assert validated.predict == 1e-4 and predicted.predict == 3e-4


def test_the_pages_are_priced_on_this_machine_and_kept_for(digits, tmp_path):
    """The end of a session keeps the time its pages take here: a slow or busy machine (a slower CI
    overran a 12 s budget with a fixed 3.5 s) keeps more. A loss plot is drawn twice: the first
    pays for the import, the rest of the pages are priced at the second."""
    from coach.pilot.page import PAGE_IN_LOSS_PLOTS, price_pages
    from coach.pilot.stages import REPORT_SECONDS, finish_seconds

    ticks = iter([10.0, 10.25])  # the first plot ends 2 s after the start, the second takes 0.25 s
    assert price_pages(8.0, clock=lambda: next(ticks)) == pytest.approx(2.0 + (PAGE_IN_LOSS_PLOTS - 1) * 0.25)
    cfg, data = digits
    s = Session(tmp_path, budget=1000.0, quiet=True)
    before = finish_seconds(s, None, data)
    assert before == pytest.approx(0.005 * 1000 + REPORT_SECONDS)  # not yet priced: the allowance
    s.record("cost", {"pages": 12.0})
    assert finish_seconds(s, None, data) == pytest.approx(before - REPORT_SECONDS + 12.0)


def test_the_ladder_stops_at_the_first_unaffordable_size(digits):
    cfg, data = digits
    watch = Stopwatch(timer=FakeTimer(0.01))
    timed = C.measure_ladder(prepare(cfg, data), affordable=lambda c: c.width < 16, seconds=1e9,
                             widths=(8, 12, 16, 24, 32), watch=watch)
    assert [c.width for c in timed] == [8, 12, 16]  # 16 is timed (to say why not) and ends the ladder
    # downwards (the plain width gets too few epochs): until the first size that does
    wide = cfg.replace(**{"model.width": 32})
    known = C.Cost(32, 9.9, 1e-3, 1)
    down = C.measure_ladder(prepare(wide, data), affordable=lambda c: c.width <= 12, seconds=1e9,
                            widths=(8, 12, 16, 24, 32), known=known, up=False, watch=watch)
    assert [c.width for c in down] == [12, 16, 24, 32] and down[-1] is known  # the known size is not re-timed
    # the time limit stops it too, after the first
    limited = C.measure_ladder(prepare(cfg, data), affordable=lambda c: True, seconds=0.0, widths=(8, 12, 16),
                               watch=watch)
    assert [c.width for c in limited] == [8]


def test_a_busy_machine_gets_fewer_threads(digits):
    cfg, data = digits
    own = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        # planted: with 2 threads every step takes 1.7x longer than with 1 (another process holds a core)
        busy = lambda j: C.Cost(j.cfg.model.width, 0.17 if torch.get_num_threads() == 2 else 0.10, 1e-4, 1)  # noqa
        threads, timed, at = C.choose_threads(prepare(cfg, data), measure=busy)
        assert threads == 1 and torch.get_num_threads() == 1 and timed == {2: 0.17, 1: 0.10} and at.step == 0.10
        torch.set_num_threads(2)
        idle = lambda j: C.Cost(j.cfg.model.width, 0.10 if torch.get_num_threads() == 2 else 0.17, 1e-4, 1)  # noqa
        assert C.choose_threads(prepare(cfg, data), measure=idle)[0] == 2 and torch.get_num_threads() == 2
        torch.set_num_threads(2)
        # a model too small to gain from a second thread keeps one: safe when the machine gets busy
        tie = lambda j: C.Cost(j.cfg.model.width, 0.10 if torch.get_num_threads() == 2 else 0.104, 1e-4, 1)  # noqa
        assert C.choose_threads(prepare(cfg, data), measure=tie)[0] == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(own)


def test_session_clock_and_resume(tmp_path):
    now = [100.0]
    s = Session(tmp_path, budget=60, started=90.0, clock=lambda: now[0], quiet=True)
    assert s.elapsed() == 10 and s.left() == 50
    now[0] = 130.0
    info = s.record("setup", {"decision": "x"})
    assert info["finished_at"] == 40 and info["seconds"] == 30  # from when the session (this stage) began
    assert json.loads((tmp_path / "state.json").read_text())["elapsed"] == 40
    # a resumed session (a new process, its own start) continues the clock where it stopped
    later = Session(tmp_path, budget=60, started=1000.0, clock=lambda: 1005.0, quiet=True)
    assert later.elapsed() == 45 and later.left() == 15 and later.done("setup")["decision"] == "x"
    now[0] = 200.0
    assert s.left() == 0.0  # never negative


def test_process_start_is_in_the_past():
    import time
    assert time.time() - 3600 < process_started() <= time.time()


def test_a_session_without_views_keeps_no_time_for_them(digits, tmp_path):
    """With test-time views forced off, the end of the session is priced as for a floor that has
    no views to try (the "without tta" arm kept their time and ended 33 s early); with EMA forced
    off, as for weights without an average."""
    from coach.pilot import plan as P
    from coach.pilot.stages import Pilot

    cfg, data = digits
    crops = cfg.replace(**{"augment.crop_padding": 2})
    s = Session(tmp_path, budget=1000.0, quiet=True)
    s.record("cost", {"costs": [C.Cost(8, 0.01, 1e-4, 1, 3e-4).to_dict()], "width": 8, "settings": {}, "pages": 1.0})
    pilot = lambda without: Pilot(s, data, crops, "", P.Sizing(10, len(data.val)), (10, 2, ""),  # noqa: E731
                                  without=frozenset(without))
    assert pilot(()).finish(crops) > pilot(()).finish(cfg)  # the crops' translations are views to try
    assert pilot({"tta"}).finish(crops) == pytest.approx(pilot(()).finish(cfg))
    # with EMA forced off there are no averaged weights to validate, nor batch norm to re-estimate
    assert pilot({"ema"}).finish(cfg) == pytest.approx(pilot(()).finish(cfg, ema=False))
    assert pilot({"ema"}).finish(cfg) < pilot(()).finish(cfg)


def test_the_batch_doubles_only_when_it_trains_enough_faster(tmp_path):
    """The doubled batch halves the updates an epoch: it is taken only when it trains over
    BATCH_GAIN more examples a second, its LR scaled by sqrt(2)."""
    import math

    from coach.pilot.stages import BATCH_GAIN, machine_settings

    cfg = make_config({"data": {"name": "digits"}, "model": {"name": "mlp", "width": 16},
                       "train": {"batch_size": 16, "progress": False, "precision": "fp32"}, "optim": {"lr": 1e-3}})
    job = prepare(cfg, load_data(cfg.data))
    for gain, doubled in ((BATCH_GAIN + 0.05, True), (BATCH_GAIN - 0.05, False)):
        # a step of the doubled batch takes 2/gain of the floor's: `gain` times the examples a second
        price = lambda j: C.Cost(16, 0.01 * (j.cfg.train.batch_size / 16) / (gain if j.cfg.train.batch_size > 16  # noqa: E731
                                                                            else 1.0), 1e-4, 1)
        settings, why = machine_settings(job, budget=100.0, measure=price)
        assert settings.get("train.batch_size", 16) == (32 if doubled else 16), why
        if doubled:
            assert settings["optim.lr"] == pytest.approx(1e-3 * math.sqrt(2))
        assert f"{gain:.2f}x the examples" in why
