"""Optimizers against the lectures' update rules written out by hand (tinygrad test_optim style)."""
import math

import pytest
import torch
from torch import nn

from coach.config import OptimConfig
from coach.optim import build_optimizer, split_decay


def grad_of(x):
    return 2 * x + 1.0  # d/dx of sum(x^2 + x)


def coach_steps(name, steps=5, **kw):
    torch.manual_seed(0)
    p = nn.Parameter(torch.randn(6, dtype=torch.float64))
    x0 = p.detach().clone()
    opt = build_optimizer(OptimConfig(name=name, **kw), [{"params": [p], "weight_decay": 0.0}])
    for _ in range(steps):
        opt.zero_grad()
        p.grad = grad_of(p.detach())
        opt.step()
    return x0, p.detach()


def test_sgd():
    x, out = coach_steps("sgd", lr=0.1)
    for _ in range(5):
        x = x - 0.1 * grad_of(x)
    assert torch.allclose(out, x)


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_and_nesterov(nesterov):
    x, out = coach_steps("nesterov" if nesterov else "momentum", lr=0.1)
    v = torch.zeros_like(x)
    for _ in range(5):
        dx = grad_of(x)
        v = 0.9 * v + dx  # rho = 0.9, the lectures' default
        x = x - 0.1 * (dx + 0.9 * v if nesterov else v)
    assert torch.allclose(out, x)


def test_adagrad():
    x, out = coach_steps("adagrad", lr=0.1, eps=1e-10)
    cache = torch.zeros_like(x)
    for _ in range(5):
        dx = grad_of(x)
        cache = cache + dx * dx
        x = x - 0.1 * dx / (cache.sqrt() + 1e-10)
    assert torch.allclose(out, x)


def test_rmsprop():
    x, out = coach_steps("rmsprop", lr=0.01)
    cache = torch.zeros_like(x)
    for _ in range(5):
        dx = grad_of(x)
        cache = 0.99 * cache + 0.01 * dx * dx  # decay rate 0.99
        x = x - 0.01 * dx / (cache.sqrt() + 1e-8)
    assert torch.allclose(out, x)


def test_adam_with_bias_correction():
    x, out = coach_steps("adam")
    m, v = torch.zeros_like(x), torch.zeros_like(x)
    for t in range(1, 6):
        dx = grad_of(x)
        m = 0.9 * m + 0.1 * dx
        v = 0.999 * v + 0.001 * dx * dx
        mh, vh = m / (1 - 0.9**t), v / (1 - 0.999**t)
        x = x - 1e-3 * mh / (vh.sqrt() + 1e-8)
    assert torch.allclose(out, x)


def test_adamw_decays_decoupled():
    torch.manual_seed(0)
    p = nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = build_optimizer(OptimConfig(name="adamw", lr=0.1, weight_decay=0.5), [{"params": [p],
                                                                                 "weight_decay": 0.5}])
    p.grad = torch.zeros(3, dtype=torch.float64)
    opt.step()
    assert torch.allclose(p.detach(), torch.full((3,), 1 - 0.1 * 0.5, dtype=torch.float64))


def test_no_decay_for_biases_and_norm():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    decay, no_decay = split_decay(model)
    assert [p.ndim for p in decay] == [2, 2] and all(p.ndim == 1 for p in no_decay)
    opt = build_optimizer(OptimConfig(name="momentum", weight_decay=1e-4), model)
    assert [g["weight_decay"] for g in opt.param_groups] == [1e-4, 0.0]
    assert len(split_decay(model, decay_bias_and_norm=True)[1]) == 0


def test_lbfgs_solves_a_small_convex_problem():
    torch.manual_seed(0)
    x = torch.randn(200, 5)
    y = (x @ torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0]) > 0).long()
    model = nn.Linear(5, 2)
    opt = build_optimizer(OptimConfig(name="lbfgs", lr=1.0), model)

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y) + 1e-3 * model.weight.pow(2).sum()
        loss.backward()
        return loss

    for _ in range(10):
        opt.step(closure)
    assert (model(x).argmax(1) == y).float().mean() > 0.97
    assert isinstance(opt, torch.optim.LBFGS) and math.isfinite(closure().item())
