"""The lectures' initialization demo, measured by coach.init_report (CS231n lecture 6)."""
import pytest
import torch

import coach
from coach.config import ModelConfig


def report(act, init, **kw):
    torch.manual_seed(0)
    model = coach.build_model(ModelConfig(name="mlp", hidden=[1024] * 6, activation=act, init=init, init_kwargs=kw,
                                          norm="none"), (512,), 10)
    return coach.init_report(model, torch.randn(512, 512))


def test_small_init_collapses_towards_zero():
    stds = report("tanh", "small").stds()
    assert all(b < a * 0.5 for a, b in zip(stds, stds[1:]))  # shrinks layer after layer
    assert stds[-1] < 1e-3


def test_large_init_saturates():
    r = report("tanh", "small", std=1.0)
    assert all(layer.frac_saturated > 0.8 for layer in r.layers)


def test_xavier_keeps_tanh_spread():
    stds = report("tanh", "xavier").stds()
    assert stds[-1] / stds[0] > 0.4 and stds[-1] > 0.2


def test_relu_kaiming_keeps_xavier_collapses():
    kaiming = report("relu", "kaiming").stds()
    xavier = report("relu", "xavier").stds()
    assert kaiming[-1] / kaiming[0] > 0.8
    assert xavier[-1] / xavier[0] < 0.25
    assert report("relu", "kaiming").layers[0].frac_zero == pytest.approx(0.5, abs=0.05)  # half the units off


def test_report_lists_layers_in_order_and_prints():
    r = report("tanh", "xavier")
    # the activation after each Linear, in forward order (features.0 flattens, odd indices are the Linears)
    assert [layer.name for layer in r.layers] == [f"features.{2 + 2 * i}" for i in range(6)]
    assert "saturated" in str(r) and len(r.layers[0].hist) == 40


def test_does_not_touch_the_model():
    torch.manual_seed(0)
    model = coach.build_model(ModelConfig(name="convnet", width=4), (1, 8, 8), 3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    coach.init_report(model, torch.randn(16, 1, 8, 8))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
