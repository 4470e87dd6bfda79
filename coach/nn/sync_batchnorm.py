"""Batch norm over the global batch under data parallelism (Ioffe & Szegedy 2015; the
synchronised form of Peng et al. 2018, "MegDet").

With DistributedDataParallel each process normalizes its own share of the batch, so the
statistics (and the running averages kept for test time) are those of a batch W times
smaller than the one the optimizer sees, and the result is not the one-process result.
Synchronised batch norm sums the per-channel count, sum and sum of squares over all
processes before normalizing, so the forward and backward passes equal those of one
process on the whole batch.

torch.nn.SyncBatchNorm does this with fused kernels, but only on accelerators; on CPUs
(the gloo backend) it refuses. `CrossProcessBatchNorm` is the same computation written
with a differentiable all-reduce, used where torch's cannot run.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn


class _SumOverProcesses(torch.autograd.Function):
    """all_reduce(sum) with a gradient: each process's input feeds every process's output, so
    the gradient of an input is the sum of the output gradients over processes."""

    @staticmethod
    def forward(ctx: object, x: Tensor) -> Tensor:  # type: ignore[override]
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: object, grad: Tensor) -> Tensor:  # type: ignore[override]
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def _spread() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class CrossProcessBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics are those of the batch across all processes."""

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input (N, C, ...), got {x.dim()}-D")

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and _spread()):
            return super().forward(x)
        dims = [0] + list(range(2, x.dim()))
        c = x.shape[1]
        count = torch.full((1,), x.numel() / c, dtype=x.dtype, device=x.device)
        total = _SumOverProcesses.apply(torch.cat([x.sum(dims), (x * x).sum(dims), count]))
        n = total[-1]
        mean = total[:c] / n
        var = (total[c:2 * c] / n - mean * mean).clamp_min(0)  # biased, as batch norm normalizes with
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked + 1)
                self.running_mean.mul_(1 - m).add_(mean.detach() * m)
                self.running_var.mul_(1 - m).add_(var.detach() * n / max(n.item() - 1, 1) * m)  # unbiased
                self.num_batches_tracked.add_(1)
        shape = [1, c] + [1] * (x.dim() - 2)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Replace every batch-norm layer of model by its synchronised form (weights and
    statistics kept, the same state-dict keys): torch's on an accelerator, ours on a CPU."""
    if device.type != "cpu":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(child, CrossProcessBatchNorm):
            new = CrossProcessBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                        child.track_running_stats)
            if child.affine:  # the same Parameter objects: optimizer groups built earlier stay valid
                new.weight, new.bias = child.weight, child.bias
            for key, buf in child.named_buffers(recurse=False):
                setattr(new, key, buf)
            new.train(child.training)
            setattr(model, name, new)
        else:
            sync_batchnorm(child, device)
    return model
