"""The loop bugs that need passes of their own (run by `coach check`, and by `coach.watch` once,
at the first step): examples that depend on each other in the forward pass, labels misaligned
with their inputs."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from coach.babysit.findings import Finding
from coach.fmt import sig

def batch_dependence(model: nn.Module, x: Tensor) -> Finding | None:
    """The lectures' gradient check turned on the batch: the output of example i must have no
    gradient with respect to any other input j. In eval mode (batch norm then normalizes with its
    running statistics and does not couple the batch); every module's mode is restored after."""
    if x.dim() < 2 or len(x) < 2 or not x.is_floating_point():
        return None
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        xs = x[:8].detach().clone().requires_grad_(True)
        y = model(xs)
        if not isinstance(y, Tensor) or y.dim() == 0 or len(y) != len(xs):
            return None
        leaks = []
        for i in (0, len(xs) - 1):
            (g,) = torch.autograd.grad(y[i].float().sum(), xs, retain_graph=True, allow_unused=True)
            if g is None:
                continue
            others = torch.cat([g[:i], g[i + 1:]]).abs().amax().item()
            own = g[i].abs().amax().item()
            if others > 1e-6 * max(own, 1e-12) and others > 0:
                leaks.append((i, others, own))
    finally:
        for m, t in modes.items():
            m.training = t
    if not leaks:
        return None
    i, others, own = leaks[0]
    return Finding(
        "batch_dependence", "error",
        f"in eval mode the output of example {i} of a batch of {len(xs)} has a gradient with respect to the other "
        f"examples' inputs (up to {sig(others)}, against {sig(own)} for its own): the forward pass mixes the batch "
        "(a reshape, view or transpose across the batch axis), so each prediction depends on what else is in its "
        "batch", "check every reshape/view/transpose/permute in forward(): the batch axis must stay first and "
                 "apart (x.view(x.size(0), -1), not x.view(-1, n))", {"example": i, "others": others, "own": own})


def label_alignment(x: Tensor, y: Tensor, shifts: int = 3, n: int = 3000) -> Finding | None:
    """Labels shifted against the inputs, or sorted apart from them. A nearest-class-mean
    classifier (cheap, no training) on the first n examples, fitted on even and scored on odd
    positions, for labels shifted by -shifts..shifts: a shift that fits clearly better than
    none says by how much they are misaligned. Labels sorted while the inputs are not (the
    inputs' classes cannot be read at any shift) is the other pattern."""
    x, y = x[:n].reshape(min(n, len(x)), -1).float(), y[:n].long()
    if len(y) < 100:
        return None
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    scores = {s: _centroid_accuracy(x, torch.roll(y, s)) for s in range(-shifts, shifts + 1)}
    best = max(scores, key=scores.get)
    k = int(y.max()) + 1
    se = math.sqrt(0.25 / (len(y) // 2))
    if best != 0 and scores[best] > scores[0] + 5 * se and scores[best] > 1.5 / k:
        return Finding(
            "labels_misaligned", "error",
            f"the labels fit the inputs {best:+d} position{'s' * (abs(best) > 1)} away far better than where they "
            f"are (a nearest-class-mean classifier: {sig(scores[best])} against {sig(scores[0])} as given): each "
            "label belongs to a neighbouring input", "keep each label with its input: index inputs and labels "
                                                     "together (a shared permutation), never one without the other",
            {"shift": best, "accuracy_shifted": scores[best], "accuracy_as_given": scores[0]})
    ordered = float((y[1:] >= y[:-1]).float().mean())
    if ordered > 0.99:
        # sorted labels: do the inputs follow them better than they follow the same blocks of labels
        # moved far along (any block labelling of these inputs)? Sorted with them, far better.
        g = torch.Generator().manual_seed(0)
        moved = max(_centroid_accuracy(x, torch.roll(y, int(r))) for r in
                    torch.randint(len(y) // 10, 9 * len(y) // 10, (5,), generator=g))
        if scores[0] <= moved + 3 * se:
            return Finding(
                "labels_misaligned", "error",
                f"the labels are sorted ({ordered:.0%} in order) but the inputs do not follow them: a nearest-class-"
                f"mean classifier reads {sig(scores[0])} as given and {sig(moved)} with the labels moved far along: "
                "labels and inputs were sorted (or shuffled) apart", "sort or shuffle inputs and labels together "
                                                                     "(one permutation for both)",
                {"ordered": ordered, "accuracy_as_given": scores[0], "accuracy_moved": moved})
    return None


def _centroid_accuracy(x: Tensor, y: Tensor) -> float:
    train, test = slice(0, None, 2), slice(1, None, 2)
    k = int(y.max()) + 1
    means = torch.zeros(k, x.shape[1]).index_add_(0, y[train], x[train])
    counts = torch.bincount(y[train], minlength=k).clamp_min(1)[:, None]
    pred = torch.cdist(x[test], means / counts).argmin(1)
    return float((pred == y[test]).float().mean())
