"""Synchronised batch norm: two gloo processes, each with half a batch, against one process
with the whole batch (forward, input and parameter gradients, running statistics)."""
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from coach.nn.sync_batchnorm import CrossProcessBatchNorm, sync_batchnorm


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(12, 3, 5, 5, generator=g) * 2 + 1
    w = torch.randn(12, 3, 5, 5, generator=g)  # a fixed upstream gradient: loss = sum(w * bn(x))
    return x, w


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.manual_seed(0)
    bn = sync_batchnorm(nn.Sequential(nn.BatchNorm2d(3)), torch.device("cpu"))
    assert isinstance(bn[0], CrossProcessBatchNorm)
    with torch.no_grad():
        bn[0].weight.copy_(torch.tensor([1.0, 2.0, 0.5]))
        bn[0].bias.copy_(torch.tensor([0.0, -1.0, 3.0]))
    x, w = _data()
    part = slice(0, 5) if rank == 0 else slice(5, 12)  # unequal shares: the counts are summed too
    xr = x[part].clone().requires_grad_(True)
    y = bn(xr)
    (w[part] * y).sum().backward()
    grads = [bn[0].weight.grad.clone(), bn[0].bias.grad.clone()]
    for g in grads:
        dist.all_reduce(g)  # what DDP does with parameter gradients (sum of the per-process losses)
    torch.save({"y": y.detach(), "x_grad": xr.grad, "w_grad": grads[0], "b_grad": grads[1],
                "running_mean": bn[0].running_mean, "running_var": bn[0].running_var}, f"{out}/{rank}.pt")
    dist.destroy_process_group()


def test_two_processes_equal_one_process_on_the_whole_batch(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"{r}.pt") for r in (0, 1))
    bn = nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, 2.0, 0.5]))
        bn.bias.copy_(torch.tensor([0.0, -1.0, 3.0]))
    x, w = _data()
    x = x.clone().requires_grad_(True)
    y = bn(x)
    (w * y).sum().backward()
    assert torch.allclose(torch.cat([r0["y"], r1["y"]]), y, atol=1e-5)
    assert torch.allclose(torch.cat([r0["x_grad"], r1["x_grad"]]), x.grad, atol=1e-5)
    assert torch.allclose(r0["w_grad"], bn.weight.grad, atol=1e-4) and torch.allclose(r0["b_grad"], bn.bias.grad)
    for r in (r0, r1):
        assert torch.allclose(r["running_mean"], bn.running_mean, atol=1e-6)
        assert torch.allclose(r["running_var"], bn.running_var, atol=1e-5)
    # what the option fixes: per-process statistics differ from the whole batch's
    alone = nn.BatchNorm2d(3)
    alone(x[:5].detach())
    assert not torch.allclose(alone.running_mean, bn.running_mean, atol=1e-3)


def test_conversion_keeps_parameters_and_one_process_is_plain_batch_norm():
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.Sequential(nn.BatchNorm1d(4)))
    weight = model[1].weight
    state = {k: v.clone() for k, v in model.state_dict().items()}
    sync_batchnorm(model, torch.device("cpu"))
    assert isinstance(model[1], CrossProcessBatchNorm) and isinstance(model[2][0], CrossProcessBatchNorm)
    assert model[1].weight is weight and model.state_dict().keys() == state.keys()
    ref = nn.BatchNorm2d(3)
    ref.load_state_dict({k.removeprefix("1."): v for k, v in state.items() if k.startswith("1.")})
    x = torch.randn(6, 3, 4, 4)
    assert torch.allclose(model[1](x), ref(x))  # no process group: ordinary batch norm
