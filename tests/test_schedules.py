"""Schedules as pure functions, checked against torch.optim.lr_scheduler and closed forms."""
import math

import pytest
import torch
from torch.optim import lr_scheduler as S

from coach.config import ScheduleConfig
from coach.optim import Plateau, cycle_end, lr_factor

TOTAL, PER_EPOCH, LR = 120, 10, 0.1


def torch_lrs(make, steps=TOTAL):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=LR)
    sched = make(opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def ours(**kw):
    c = ScheduleConfig(**kw)
    return [LR * lr_factor(c, s, TOTAL, PER_EPOCH, LR) for s in range(TOTAL)]


def close(a, b, tol=1e-9):
    return all(abs(x - y) <= tol + 1e-6 * abs(y) for x, y in zip(a, b))


def test_step_decay_matches_steplr():
    assert close(ours(name="step", step_epochs=3, gamma=0.5),
                 torch_lrs(lambda o: S.StepLR(o, step_size=3 * PER_EPOCH, gamma=0.5)))


def test_multistep_matches():
    assert close(ours(name="multistep", milestones=[0.25, 0.5], gamma=0.1),
                 torch_lrs(lambda o: S.MultiStepLR(o, milestones=[30, 60], gamma=0.1)))


def test_exponential_per_epoch():
    lrs = ours(name="exponential", gamma=0.9)
    assert lrs[PER_EPOCH * 3] == pytest.approx(LR * 0.9**3)


def test_inverse_time():
    lrs = ours(name="inverse_time", decay=0.5)
    assert lrs[PER_EPOCH * 4] == pytest.approx(LR / (1 + 0.5 * 4))


def test_cosine_matches_cosineannealing():
    assert close(ours(name="cosine", min_lr=0.001),
                 torch_lrs(lambda o: S.CosineAnnealingLR(o, T_max=TOTAL, eta_min=0.001)))


def test_linear_ends_at_floor():
    lrs = ours(name="linear")
    assert lrs[0] == LR and lrs[TOTAL // 2] == pytest.approx(LR / 2)
    floor = 0.004
    ref = torch_lrs(lambda o: S.LinearLR(o, start_factor=1.0, end_factor=floor / LR, total_iters=TOTAL))
    assert close(ours(name="linear", min_lr=floor), ref)
    c = ScheduleConfig(name="linear", min_lr=floor)
    assert LR * lr_factor(c, TOTAL, TOTAL, PER_EPOCH, LR) == pytest.approx(floor)  # the end of training
    assert LR * lr_factor(c, TOTAL - 1, TOTAL, PER_EPOCH, LR) == pytest.approx(floor + (LR - floor) / TOTAL)


def test_onecycle_matches_torch():
    ref = torch_lrs(lambda o: S.OneCycleLR(o, max_lr=LR, total_steps=TOTAL, pct_start=0.3))
    assert close(ours(name="onecycle", pct_start=0.3), ref, tol=1e-7)


def test_cyclic_restarts_and_marks_cycle_ends():
    c = ScheduleConfig(name="cyclic", cycles=3)
    lrs = [lr_factor(c, s, TOTAL, PER_EPOCH) for s in range(TOTAL)]
    assert lrs[0] == lrs[40] == lrs[80] == 1.0 and lrs[39] < 0.01
    assert [s for s in range(TOTAL) if cycle_end(c, s, TOTAL)] == [39, 79, 119]


def test_warmup_composes():
    c = ScheduleConfig(name="cosine", warmup=10)
    f = [lr_factor(c, s, TOTAL, PER_EPOCH) for s in range(TOTAL)]
    assert f[0] == pytest.approx(1 / 11) and f[9] == pytest.approx(10 / 11 * 0.5 * (1 + math.cos(math.pi * 9 / 120)))
    assert lr_factor(ScheduleConfig(name="constant", warmup=0.5), 0, 100, 10) == pytest.approx(1 / 51)


def test_plateau_matches_reduce_on_plateau():
    values = [1.0, 0.9, 0.9, 0.9, 0.9, 0.8, 0.8, 0.8, 0.8, 0.8]
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    ref = S.ReduceLROnPlateau(opt, mode="min", factor=0.1, patience=2)
    ours_ = Plateau("min", 0.1, 2)
    for v in values:
        ref.step(v)
        assert ours_.update(v) == pytest.approx(opt.param_groups[0]["lr"])
    restored = Plateau("min", 0.1, 2)
    restored.load_state_dict(ours_.state_dict())
    assert restored.scale == ours_.scale
