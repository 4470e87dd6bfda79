"""The evidence of a hand-written loop's bugs, gathered by hooks on its model and optimizer that
only read: what each backward pass adds to each parameter (tensor hooks), what the update uses
(the optimizer's step hooks), the inputs and outputs of each training forward, and what the
loss was computed from (its autograd graph)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

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
    batch_spreads: list[list[float]] = field(default_factory=list)  # the variance a random batch's mean would have
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
        self._inputs_step = 0
        self._directions: Tensor | None = None

    def sampled(self, step: int) -> bool:
        return step <= FIRST or step % self.every == 0

    def near(self, step: int) -> bool:
        """A sampled step or the one before it (whose gradient a sampled step is compared with)."""
        return self.sampled(step) or self.sampled(step + 1)

    def inputs_at(self, step: int) -> bool:
        """The steps whose batch is summarized: ten in every sampling interval (the summary is a
        few numbers; the batches' spread needs many of them, not every one)."""
        return step <= FIRST or step % max(1, self.every // 10) == 0

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
            if not self.near(self.ev.steps + 1):
                return
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
        step = self.ev.steps + 1
        if x is None or not x.is_floating_point() or x.dim() < 2 or len(x) < 2 or not self.inputs_at(step) or \
                self._inputs_step == step:
            return
        self._inputs_step = step
        flat = x.detach().reshape(len(x), -1).float().cpu()
        if self._directions is None or self._directions.shape[0] != flat.shape[1]:
            self._directions = torch.randn(flat.shape[1], 4, generator=torch.Generator().manual_seed(0))
        seen = flat @ self._directions  # (batch, 4)
        self.ev.batch_means.append(seen.mean(0).tolist())
        self.ev.batch_spreads.append((seen.var(0) / len(x)).tolist())  # a random batch's mean varies this much

    def before_step(self) -> None:
        """At optimizer.step(), the gradients in place: compare them with what backward made
        (at sampled steps, with the step before's kept; every step, the modes of the layers)."""
        step = self.ev.steps + 1
        self._modes(step)
        if not self.near(step):
            self._prev = {}
            return
        held = {n: _flat(p.grad) for n, p in self.params.items() if p.grad is not None}
        if self.sampled(step):
            self._accumulation(step, held)
            self._groups()
        self._prev = held

    def _accumulation(self, step: int, held: dict[str, Tensor]) -> None:
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
