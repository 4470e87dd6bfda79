"""The bugs people make in their own training code, each found by its mechanism.

The lectures' checklist finds what a bad *setting* does (LR, initialization, regularization);
a hand-written loop adds bugs of its own that no setting explains, and that look like the
setting faults from the curves alone (a missing zero_grad reads as "LR too high"). Karpathy's
"A Recipe for Training Neural Networks" (2019) lists the checks a person does by hand; here
each is a mechanism read off the loop while it runs, through hooks that change nothing:

  grads_accumulate       a tensor hook on every parameter records what each backward pass
                         adds; at optimizer.step() the gradient held is that (zero_grad was
                         called, or accumulation on purpose over micro-batches) or that plus
                         the last step's (it was not)
  softmax_before_loss,   the model's outputs are probabilities (rows in [0, 1] summing to 1):
  loss_on_probabilities  with confident outputs a loss that still sits on the floor of a
                         cross-entropy of probabilities, log(C - 1 + e) - 1, got them where it
                         wanted logits; a negative loss got them where it wanted log-probabilities
  training_in_eval_mode  at optimizer.step() the model, with dropout or batch norm in it, is
                         in eval mode (model.eval() before the loop, or no model.train() after
                         a validation pass)
  params_not_updated     parameters with a gradient that no optimizer group holds (an
                         optimizer built on part of the model, or on another model)
  params_frozen          parameters the optimizer was built for have requires_grad off, and
                         they are not a frozen backbone (a prefix of the network)
  grad_clip_too_hard     the gradient at the step is a small fraction of what backward made:
                         clipping, not the LR, sets the step size
  schedule_too_fast      the LR fell to 1/1000 of its peak in the first half of training and
                         stayed there (an epoch schedule stepped every batch)
  data_not_shuffled      whole batches are predicted as one class that changes along the
                         epoch, and the loss swings with the position in it (sorted data)
  batch_dependence       the output of example i has a gradient with respect to input j
                         (a reshape that mixes the batch), in eval mode where batch norm does
                         not couple them: extra passes, run by `coach check` and once at the
                         start of a watch
  labels_misaligned      labels fit the inputs when shifted by a few positions, or are sorted
                         while the inputs are not (`coach check`, which holds the data)
  input_scale_mismatch   inputs given to predict are on another scale than at training
                         (coach.data.preprocess.scale_mismatch: the run keeps its inputs' range)

`Inspector` gathers the evidence (cheap, every step; the heavier reads on sampled steps);
`diagnose_loop` turns it into findings, a pure function tested on recorded evidence.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from coach.babysit.findings import Finding
from coach.fmt import sig

FIRST = 8  # the first steps are all inspected (most bugs act from the start)
SLICE = 16  # gradient entries per parameter compared at each step
NORMALIZING = (nn.modules.batchnorm._BatchNorm, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
               nn.AlphaDropout)


def _flat(t: Tensor) -> Tensor:
    return t.detach().reshape(-1)[:SLICE].float().cpu().clone()  # a copy: .grad is added to in place


def _residual(g: Tensor, basis: Tensor) -> float:
    """Relative residual of g against its best multiple of basis: 0 when g is a rescaled basis
    (clipping and loss scaling rescale the gradient; nothing else does)."""
    denom = float(basis @ basis)
    if denom == 0.0 or float(g @ g) == 0.0:
        return math.inf
    return float((g - (g @ basis) / denom * basis).norm() / g.norm())


@dataclass
class Evidence:
    """What the hooks saw, step by step (only sampled steps carry the heavier reads)."""
    steps: int = 0
    accumulating: list[int] = field(default_factory=list)  # steps whose gradient held the last step's too
    fresh: list[int] = field(default_factory=list)  # steps whose gradient was only this step's backward
    clip_ratio: list[float] = field(default_factory=list)  # |grad at the step| / |what backward made|
    raw_norm: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)  # steps taken with dropout/batch norm in eval mode
    eval_modules: list[str] = field(default_factory=list)
    not_in_optimizer: list[str] = field(default_factory=list)
    optimizer_foreign: int = 0  # parameters the optimizer holds that are not the model's
    optimizer_own: int = 0
    frozen_in_optimizer: list[str] = field(default_factory=list)
    frozen_prefix: bool = True  # the frozen parameters are the first ones of the network (a backbone)
    outputs: list[dict[str, Any]] = field(default_factory=list)  # per sampled training forward
    loss_kinds: list[str] = field(default_factory=list)  # per sampled loss: what its graph shows (loss_graph)
    batch_means: list[list[float]] = field(default_factory=list)  # each step's input mean, on 4 random directions
    losses_read: int = 0
    lrs: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


class Inspector:
    """Hooks on a user's model and optimizer that gather the evidence; they read, never change.
    `every`: the sampled steps after the first FIRST. `closure`: the loop computes its gradients
    inside optimizer.step(closure) (Lightning), so the caller calls before_step() once they exist."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, every: int = 50, closure: bool = False):
        self.model, self.optimizer, self.every, self.closure = model, optimizer, every, closure
        self.ev = Evidence()
        self.params = {n: p for n, p in model.named_parameters()}
        self._fresh: dict[str, Tensor] = {}
        self._sq: dict[str, float] = {}
        self._prev: dict[str, Tensor] = {}
        self._hooks: list[Any] = []
        self._checked_groups = False
        self.paused = False  # while coach runs its own extra passes on the model
        self._normalizing = [(n, m) for n, m in model.named_modules() if isinstance(m, NORMALIZING)]
        self._directions: Tensor | None = None

    def sampled(self, step: int) -> bool:
        return step <= FIRST or step % self.every == 0

    # ------------------------------------------------------------------ hooks
    def attach(self) -> "Inspector":
        for name, p in self.params.items():
            if p.requires_grad:
                self._hooks.append(p.register_hook(self._grad_hook(name)))
        self._hooks.append(self.model.register_forward_hook(self._forward))
        if not self.closure:
            self._hooks.append(self.optimizer.register_step_pre_hook(lambda *_: self.before_step()))
        self._hooks.append(self.optimizer.register_step_post_hook(lambda *_: self.after_step()))
        return self

    def detach(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks.clear()

    def _grad_hook(self, name: str) -> Any:
        def hook(grad: Tensor) -> None:  # what this backward pass adds to the parameter's gradient
            part = _flat(grad)
            self._fresh[name] = self._fresh[name] + part if name in self._fresh else part
            if self.sampled(self.ev.steps + 1):
                self._sq[name] = self._sq.get(name, 0.0) + float(grad.detach().float().pow(2).sum())
        return hook

    def _forward(self, module: nn.Module, args: Any, out: Any) -> None:
        if self.paused or not torch.is_grad_enabled():
            return  # coach's own passes, and validation
        self._inputs(args)
        if not (self.sampled(self.ev.steps + 1) and isinstance(out, Tensor)
                and out.dim() == 2 and out.shape[1] > 1 and out.is_floating_point()):
            return
        o = out.detach().float()
        if len(self.ev.outputs) and self.ev.outputs[-1]["step"] == self.ev.steps + 1:
            return  # one forward per step is enough
        probs = bool(o.min() >= -1e-6 and o.max() <= 1 + 1e-6 and (o.sum(1) - 1).abs().max() < 1e-3)
        pred = o.argmax(1)
        mode = int(pred.mode().values)
        self.ev.outputs.append({"step": self.ev.steps + 1, "probs": probs, "classes": o.shape[1],
                                "confidence": float((o if probs else o.softmax(1)).max(1).values.mean()),
                                "mode": mode, "mode_share": float((pred == mode).float().mean()),
                                "batch": int(o.shape[0])})

    def _inputs(self, args: Any) -> None:
        """Each training step's batch mean, on a few fixed random directions: with the data sorted,
        neighbouring batches come from one class and their means follow each other."""
        x = args[0] if args and isinstance(args[0], Tensor) else None
        if x is None or not x.is_floating_point() or x.dim() < 2 or len(x) < 2 or \
                len(self.ev.batch_means) > self.ev.steps:
            return
        m = x.detach().reshape(len(x), -1).float().mean(0).cpu()
        if self._directions is None or self._directions.shape[0] != m.numel():
            self._directions = torch.randn(m.numel(), 4, generator=torch.Generator().manual_seed(0))
        self.ev.batch_means.append((m @ self._directions).tolist())

    def before_step(self) -> None:
        """At optimizer.step(), the gradients in place: compare them with what backward made."""
        step = self.ev.steps + 1
        held = {n: _flat(p.grad) for n, p in self.params.items() if p.grad is not None}
        # optimizer.zero_grad() clears only what the optimizer holds: the others' gradients are that bug's
        mine = {id(p) for g in self.optimizer.param_groups for p in g["params"]}
        names = [n for n in held if n in self._fresh and id(self.params[n]) in mine]
        if names:
            g = torch.cat([held[n] for n in names])
            f = torch.cat([self._fresh[n] for n in names])
            if all(n in self._prev for n in names):
                q = torch.cat([self._prev[n] for n in names])
                alone, plus = _residual(g, f), _residual(g, f + q)
                if plus < 1e-3 and alone > 1e-2:
                    self.ev.accumulating.append(step)
                elif alone < 1e-3 and (plus > 1e-2 or float(q.norm()) == 0):
                    self.ev.fresh.append(step)
        self._prev = held
        self._modes(step)
        if self.sampled(step):
            self._groups()

    def _modes(self, step: int) -> None:
        """Dropout or batch norm in eval mode at a step: every step (a few flags), since a loop that
        forgets model.train() after its first validation is in eval mode from then on."""
        off = [n for n, m in self._normalizing if not m.training
               and (not self.model.training or any(p.requires_grad for p in m.parameters(recurse=False)))]
        if off:
            self.ev.eval_steps.append(step)
            self.ev.eval_modules = off

    def _groups(self) -> None:
        held = {id(p) for g in self.optimizer.param_groups for p in g["params"]}
        mine = {id(p): n for n, p in self.params.items()}
        self.ev.not_in_optimizer = [n for n, p in self.params.items()
                                    if p.requires_grad and p.grad is not None and id(p) not in held]
        self.ev.optimizer_own = sum(i in mine for i in held)
        self.ev.optimizer_foreign = sum(i not in mine for i in held)
        if not self._checked_groups:
            self._checked_groups = True
            order = list(self.params)
            frozen = [n for n, p in self.params.items() if not p.requires_grad and id(p) in held]
            self.ev.frozen_in_optimizer = frozen
            # a frozen backbone is the first parameters of the network; anything else is an accident
            self.ev.frozen_prefix = all(not self.params[n].requires_grad for n in order[:len(frozen)]) \
                if frozen else True

    def read_loss(self, loss: Any, step: int) -> None:
        """Step `step`'s loss tensor (the loop hands it over, before or after backward): its graph
        says what it was computed from."""
        if isinstance(loss, Tensor) and loss.grad_fn is not None and self.sampled(step):
            self.ev.losses_read += 1
            kind = loss_graph(loss)
            if kind:
                self.ev.loss_kinds.append(kind)

    def after_step(self) -> None:
        """After the update, the gradient it used is still in place (clipping, where a Lightning
        closure does it, has happened by now): how much of what backward made did it keep?"""
        self.ev.steps += 1
        if self.sampled(self.ev.steps) and self._sq:
            raw = math.sqrt(sum(self._sq.values()))
            used = math.sqrt(sum(float(p.grad.detach().float().pow(2).sum()) for p in self.params.values()
                                 if p.grad is not None and p.requires_grad))
            if raw > 0:
                self.ev.clip_ratio.append(used / raw)
                self.ev.raw_norm.append(raw)
        self.ev.lrs.append(float(self.optimizer.param_groups[0]["lr"]))
        self._fresh, self._sq = {}, {}


PASS_THROUGH = ("View", "Reshape", "Unsafe", "Permute", "Transpose", "Clone", "ToCopy", "Squeeze", "Unsqueeze",
                "Expand", "Select", "Slice", "Index", "Contiguous", "AsStrided")


def _input_op(node: Any) -> str:
    """The op that made a node's first input, looking through reshapes and copies."""
    for _ in range(8):
        nxt = [n for n, _ in getattr(node, "next_functions", ()) if n is not None]
        if not nxt:
            return ""
        node = nxt[0]
        name = type(node).__name__
        if not name.startswith(PASS_THROUGH):
            return name
    return ""


def loss_graph(loss: Tensor, budget: int = 300) -> str | None:
    """What the loss was computed from, read off its autograd graph (it outlives backward):
    "softmax_before_loss" when a log-softmax (cross_entropy's) takes a softmax's output,
    "loss_on_probabilities" when nll_loss takes a softmax's output directly, else None."""
    todo, seen = [getattr(loss, "grad_fn", None)], set()
    while todo and len(seen) < budget:
        node = todo.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        name = type(node).__name__
        if name.startswith("LogSoftmaxBackward") and _input_op(node).startswith("SoftmaxBackward"):
            return "softmax_before_loss"
        if name.startswith("NllLossBackward") and _input_op(node).startswith("SoftmaxBackward"):
            return "loss_on_probabilities"
        todo += [n for n, _ in node.next_functions if n is not None]
    return None


# ------------------------------------------------------------------------- the verdicts
def ce_floor(classes: int) -> float:
    """The least cross-entropy of probabilities read as logits: p_y = 1, the rest 0."""
    return math.log(classes - 1 + math.e) - 1


def diagnose_loop(ev: Evidence, losses: list[float], epoch_steps: int | None = None) -> list[Finding]:
    """The findings the evidence supports, each on its own mechanism."""
    out: list[Finding] = []
    for rule in (_accumulate, _probabilities, _eval_mode, _optimizer_groups, _frozen, _clipping):
        rule(ev, losses, out)
    _schedule(ev, epoch_steps, out)
    _shuffled(ev, losses, out)
    return out


def _accumulate(ev: Evidence, losses: list[float], out: list[Finding]) -> None:
    if len(ev.accumulating) >= 2 and len(ev.accumulating) > 3 * len(ev.fresh):
        out.append(Finding(
            "grads_accumulate", "error",
            f"at {len(ev.accumulating)} of {len(ev.accumulating) + len(ev.fresh)} steps checked (from step "
            f"{ev.accumulating[0]}) the gradient at optimizer.step() held the previous step's gradient plus this "
            "step's backward: optimizer.zero_grad() is not called, so every update carries all the earlier ones",
            "call optimizer.zero_grad() before each loss.backward() (for accumulation on purpose: every k "
            "micro-batches, with the loss divided by k)", {"steps": ev.accumulating[:10], "clean_steps": ev.fresh[:10]}))


def _probabilities(ev: Evidence, losses: list[float], out: list[Finding]) -> None:
    """Two mechanisms: the loss's own graph (a softmax feeding cross_entropy's log-softmax, or
    nll_loss directly), and the model's outputs being probabilities with a loss that behaves as
    one computed from them (never under the floor while confident; negative)."""
    finite = [v for v in losses if math.isfinite(v)]
    graph = max(set(ev.loss_kinds), key=ev.loss_kinds.count) if len(ev.loss_kinds) >= 2 else None
    if graph and finite:
        low = min(finite)
        what = ("a softmax's output went into cross_entropy, which applies log-softmax itself: the probabilities "
                f"are read as logits, and the loss cannot go under log(C - 1 + e) - 1 (it went down to {sig(low)})"
                if graph == "softmax_before_loss" else
                f"a softmax's output went straight into nll_loss, which expects log-probabilities: the loss is minus "
                f"a probability and goes negative (down to {sig(low)}), and it rewards nothing a log would")
        out.append(Finding(graph, "error", f"in the loss's autograd graph ({len(ev.loss_kinds)} of "
                                           f"{ev.losses_read} steps read): {what}",
                           "return logits and use F.cross_entropy on them" if graph == "softmax_before_loss" else
                           "use F.cross_entropy on logits, or F.nll_loss on torch.log_softmax(logits)",
                           {"min_loss": low, "steps": len(ev.loss_kinds)}))
        return
    seen = ev.outputs
    if not seen or sum(o["probs"] for o in seen) < 0.8 * len(seen) or not finite:
        return
    c = seen[-1]["classes"]
    low = min(finite)
    if low < 0:
        out.append(Finding(
            "loss_on_probabilities", "error",
            f"the model's outputs are probabilities (each row in [0, 1], summing to 1) and the loss went negative "
            f"({sig(low)}): a loss that expects log-probabilities (nll_loss) got probabilities, so it rewards "
            "nothing a log would", "return logits and use F.cross_entropy, or pass torch.log_softmax(logits) to "
                                   "F.nll_loss", {"min_loss": low, "classes": c}))
        return
    confident = seen[-1]["confidence"]
    floor = ce_floor(c)
    if confident > 0.9 and low >= floor - 0.05:
        out.append(Finding(
            "softmax_before_loss", "error",
            f"the model's outputs are probabilities (rows in [0, 1] summing to 1), {sig(confident)} on their "
            f"top class, yet the loss never went under {sig(low)}: cross-entropy applied to probabilities cannot "
            f"go under {sig(floor)} for {c} classes (log-softmax of numbers in [0, 1] is nearly flat), so the "
            "gradients are tiny and the model barely learns", "remove the softmax at the end of the model: "
                                                                "F.cross_entropy takes logits and applies "
                                                                "log-softmax itself",
            {"min_loss": low, "floor": floor, "confidence": confident, "classes": c}))


def _eval_mode(ev: Evidence, losses: list[float], out: list[Finding]) -> None:
    if len(ev.eval_steps) >= 2:
        out.append(Finding(
            "training_in_eval_mode", "error",
            f"optimizer steps were taken with {', '.join(ev.eval_modules[:4])}"
            f"{' and more' if len(ev.eval_modules) > 4 else ''} in eval mode (at {len(ev.eval_steps)} steps "
            f"checked, from step {ev.eval_steps[0]}): dropout does not drop and batch norm uses its running "
            "statistics instead of the batch's, so the model trains as something it is not",
            "call model.train() before the training loop and again after every validation pass (model.eval())",
            {"steps": ev.eval_steps[:10], "modules": ev.eval_modules[:10]}))


def _optimizer_groups(ev: Evidence, losses: list[float], out: list[Finding]) -> None:
    if ev.optimizer_own == 0 and ev.optimizer_foreign:
        out.append(Finding(
            "params_not_updated", "error",
            f"the optimizer holds {ev.optimizer_foreign} parameters, none of them this model's: the model's "
            f"{len(ev.not_in_optimizer)} parameters with gradients are never updated (an optimizer built on "
            "another model, or on a copy)", "build the optimizer from this model: torch.optim.X(model.parameters())",
            {"not_in_optimizer": ev.not_in_optimizer[:10]}))
    elif ev.not_in_optimizer:
        out.append(Finding(
            "params_not_updated", "error",
            f"{len(ev.not_in_optimizer)} parameter tensors get gradients but no optimizer group holds them "
            f"({', '.join(ev.not_in_optimizer[:4])}{' ...' if len(ev.not_in_optimizer) > 4 else ''}): they "
            "never change", "build the optimizer from model.parameters() (or add the missing ones as a group); "
                            "to freeze them on purpose, set requires_grad=False",
            {"not_in_optimizer": ev.not_in_optimizer[:20]}))


def _frozen(ev: Evidence, losses: list[float], out: list[Finding]) -> None:
    if ev.frozen_in_optimizer and not ev.frozen_prefix:
        out.append(Finding(
            "params_frozen", "warning",
            f"{len(ev.frozen_in_optimizer)} parameter tensors the optimizer was built for have requires_grad off "
            f"({', '.join(ev.frozen_in_optimizer[:4])}), and they are not a frozen backbone (the first layers): "
            "they never train", "set requires_grad=True on them, or leave them out of the optimizer if freezing "
                                "them is meant", {"frozen": ev.frozen_in_optimizer[:20]}))


def _clipping(ev: Evidence, losses: list[float], out: list[Finding]) -> None:
    r = sorted(ev.clip_ratio)
    if len(r) >= 3 and r[len(r) // 2] < 0.1 and sum(x < 0.5 for x in r) >= 0.8 * len(r):
        med = r[len(r) // 2]
        out.append(Finding(
            "grad_clip_too_hard", "warning",
            f"at optimizer.step() the gradient was {sig(med)} of the norm backward made (median of {len(r)} "
            f"steps checked; backward's median norm {sig(sorted(ev.raw_norm)[len(ev.raw_norm) // 2])}): clipping "
            "rescales nearly every step, so its threshold, not the learning rate, sets the step size",
            "raise the clipping threshold to about the gradient's usual norm (max_norm=1.0 is common) or remove it",
            {"median_ratio": med, "ratios": r[:10]}))


def _schedule(ev: Evidence, epoch_steps: int | None, out: list[Finding]) -> None:
    lrs, n = ev.lrs, len(ev.lrs)
    if n < 20:
        return
    peak = max(lrs)
    low = next((i for i, v in enumerate(lrs) if v < 1e-3 * peak and max(lrs[i:]) < 1e-2 * peak), None)
    if peak > 0 and low is not None and low < 0.5 * n:
        where = f" (in epoch {low // epoch_steps + 1})" if epoch_steps else ""
        out.append(Finding(
            "schedule_too_fast", "warning",
            f"the learning rate fell from {sig(peak)} to {sig(lrs[low])} by step {low + 1} of {n}{where} and stayed "
            "under 1/100 of its peak: the rest of training hardly moved the weights (a per-epoch schedule "
            "stepped after every batch decays epochs-worth at each step)",
            "call scheduler.step() once per epoch for an epoch schedule, or size the schedule in steps",
            {"peak_lr": peak, "step": low + 1, "steps": n, "lr": lrs[low]}))


def _shuffled(ev: Evidence, losses: list[float], out: list[Finding]) -> None:
    """Batches drawn at random are independent: neither their inputs' means nor their losses
    (less the trend) follow each other from one step to the next. Sorted data make both do."""
    inputs = lag_correlation(torch.tensor(ev.batch_means, dtype=torch.float64), None) \
        if len(ev.batch_means) >= 30 else 0.0
    swing = lag_correlation(torch.tensor([v for v in losses if math.isfinite(v)], dtype=torch.float64)[:, None])
    if inputs > 0.3:
        out.append(Finding(
            "data_not_shuffled", "warning",
            f"neighbouring batches are alike: their inputs' means follow each other from step to step "
            f"(correlation {sig(inputs)} over {len(ev.batch_means)} steps; about 0 for batches drawn at random), "
            f"and the loss less its trend follows itself too ({sig(swing)}): the data arrive sorted (by class, most "
            "likely), so each stretch of training pulls the model towards one class", "shuffle every epoch: DataLoader(..., "
                                                                     "shuffle=True) or a new torch.randperm each epoch",
            {"input_correlation": inputs, "loss_correlation": swing, "steps": len(ev.batch_means)}))


def lag_correlation(series: Tensor, window: int | None = 25) -> float:
    """Lag-1 autocorrelation of each column less its moving average (window steps; None: its
    mean), averaged: about 0 for independent draws, near 1 for a series that follows itself."""
    if series.dim() != 2 or len(series) < 3 * (window or 10):
        return 0.0
    t = series.T[:, None, :]  # (columns, 1, steps)
    trend = torch.nn.functional.avg_pool1d(t, window, 1, window // 2, count_include_pad=False)[:, 0, :series.shape[0]] \
        if window else series.T.mean(1, keepdim=True)
    r = series.T - trend
    r = r - r.mean(1, keepdim=True)
    den = (r * r).sum(1)
    ok = den > 0
    return float(((r[:, 1:] * r[:, :-1]).sum(1)[ok] / den[ok]).mean()) if ok.any() else 0.0


# ------------------------------------------------------------------------- extra passes
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
