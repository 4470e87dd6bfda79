"""Transfer learning (CS231n lectures 6-7): reuse a trained network on new data.

  linear        reinitialize the head for the new classes, freeze everything else
                (batch-norm statistics too), train the head
  finetune-top  also train the top third of the feature blocks, at 1/10 of the head's LR
  finetune-all  train everything, the backbone at 1/10 of the head's LR (discriminative
                learning rates); optionally unfreezing gradually from the top, one block
                per epoch, and with frozen batch-norm statistics
  auto          the lectures' 2x2 advice: little or lots of target data x similar or
                different data, where similarity is measured: a linear probe on the
                frozen pretrained features against the same probe on random features

Weights come from a coach run directory, a safetensors file or a plain PyTorch state dict
(loaded with weights_only=True), never from a network hub; what matched is reported.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from coach.config import Config
from coach.data import Data, load_data
from coach.errors import UserError
from coach.nn.models import CoachModel, build_model
from coach.train import Callback, Run, fit
from coach.train.run import read_safetensors, write_json

MODES = ("linear", "finetune-top", "finetune-all", "auto")
LITTLE_PER_CLASS = 200  # "very little data": fewer training examples per class than this
BACKBONE_LR_MULT = 0.1


class FrozenBatchNorm(nn.Module):
    """Batch norm that always uses its running statistics (and never updates them)."""

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm):
        super().__init__()
        self.eps = bn.eps
        self.weight, self.bias = bn.weight, bn.bias
        self.register_buffer("running_mean", bn.running_mean.clone())
        self.register_buffer("running_var", bn.running_var.clone())
        self.register_buffer("num_batches_tracked", bn.num_batches_tracked.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(module, name, FrozenBatchNorm(child))
        else:
            freeze_batchnorm(child)
    return module


def blocks(model: CoachModel) -> list[nn.Module]:
    """The feature extractor's blocks, bottom to top: a layer with weights (a conv, a linear
    layer, a residual block) with the normalization, activation, pooling and dropout that
    follow it. A batch norm is part of its layer's block, never a block of its own."""
    groups: list[list[nn.Module]] = []
    for m in model.features.children():
        weighted = any(True for _ in m.parameters())
        norm = isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm))
        if (weighted and not norm) or not groups:
            groups.append([m])
        else:
            groups[-1].append(m)
    return [nn.Sequential(*g) for g in groups if any(True for m in g for _ in m.parameters())]


def freeze_blocks_batchnorm(model: CoachModel, frozen: list[nn.Module]) -> None:
    """Freeze the batch-norm statistics of the given blocks, in the model itself."""
    ids = {id(m) for b in frozen for m in b.children()}
    for name, child in model.features.named_children():
        if id(child) not in ids:
            continue
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(model.features, name, FrozenBatchNorm(child))
        else:
            freeze_batchnorm(child)


def load_source(source: str | Path, cfg: Config, data: Data) -> tuple[CoachModel, dict[str, Any]]:
    """The pretrained model, shaped for the target data's inputs, with a report of what loaded."""
    src = Path(source)
    if (src / "config.yaml").exists():
        run = Run.open(src)
        model = run.load_model("best")
        if tuple(run.spec["input_shape"]) != tuple(data.input_shape):
            raise UserError(f"--from {src}: incompatible weights: the source model takes inputs of shape "
                            f"{tuple(run.spec['input_shape'])}, the target data {tuple(data.input_shape)}")
        return model.train(), {"source": str(src), "kind": "run", "matched": len(model.state_dict()),
                               "missing": [], "unexpected": []}
    if not src.is_file():
        raise UserError(f"--from {src}: not a run directory, safetensors file or state-dict file")
    if src.suffix == ".safetensors":
        state = read_safetensors(src)
    else:
        from coach.train.checkpoint import load
        state = load(src)
        state = state.get("model", state) if isinstance(state, dict) else state
    model = build_model(cfg.model, data.input_shape, data.num_classes, cfg.regularize, data.preprocess,
                        batch=data.train.x[:256])
    own = model.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape and not k.startswith("head.")}
    if not any(k.startswith("features.") for k in matched):
        raise UserError(f"--from {src}: incompatible weights: none of its {len(state)} tensors match the feature extractor of model.name="
                        f"{cfg.model.name} (width {cfg.model.width}, depth {cfg.model.depth}) by name and shape")
    model.load_state_dict(matched, strict=False)
    report = {"source": str(src), "kind": src.suffix.lstrip("."), "matched": len(matched),
              "missing": sorted(k for k in own if k not in matched and not k.startswith("head.")),
              "unexpected": sorted(k for k in state if k not in own),
              "shape_mismatch": sorted(k for k in state if k in own and own[k].shape != state[k].shape)}
    return model, report


@torch.no_grad()
def linear_probe(model: CoachModel, data: Data, limit: int = 2000) -> float:
    """Validation accuracy of logistic regression on the model's frozen features."""
    from sklearn.linear_model import LogisticRegression

    model.eval()
    xt, yt = model.embed(data.train.x[:limit]).numpy(), data.train.y[:limit].numpy()
    xv, yv = model.embed(data.val.x[:limit]).numpy(), data.val.y[:limit].numpy()
    clf = LogisticRegression(max_iter=300).fit(xt, yt)
    return float(clf.score(xv, yv))


def choose_mode(model: CoachModel, cfg: Config, data: Data,
                little_per_class: int = LITTLE_PER_CLASS) -> tuple[str, str]:
    """The lectures' 2x2 table, with similarity measured by linear probes."""
    per_class = len(data.train) / data.num_classes
    little = per_class < little_per_class
    pretrained = linear_probe(model, data)
    torch.manual_seed(cfg.seed)
    random = linear_probe(build_model(cfg.model.model_copy(update={"init": "kaiming"}), data.input_shape,
                                      data.num_classes, cfg.regularize, data.preprocess), data)
    closed = (pretrained - random) / max(1 - random, 1e-6)
    similar = closed >= 0.25
    mode = {(True, True): "linear", (True, False): "linear",
            (False, True): "finetune-top", (False, False): "finetune-all"}[(little, similar)]
    why = (f"{per_class:.0f} training examples per class ({'little' if little else 'lots of'} data: the line is "
           f"{little_per_class}); a linear probe on the pretrained features reaches {pretrained:.1%} validation "
           f"accuracy against {random:.1%} on random features, closing {closed:.0%} of the gap to 100% "
           f"({'similar' if similar else 'different'} data: the line is 25%). ")
    why += {"linear": "Little data: train only a linear classifier on top, keep the rest frozen"
                      + ("." if similar else " (little and different data is the hard corner; more data would "
                                             "help most)."),
            "finetune-top": "Lots of similar data: fine-tune the top layers too, at a lower learning rate.",
            "finetune-all": "Lots of different data: fine-tune the whole network, the backbone at 1/10 of "
                            "the head's learning rate."}[mode]
    return mode, why


class GradualUnfreeze(Callback):
    """After each validation, unfreeze the next block from the top (Howard & Ruder 2018)."""

    def __init__(self, frozen_top_down: list[nn.Module], weight_decay: float):
        self.pending, self.weight_decay = list(frozen_top_down), weight_decay

    def on_eval_end(self, t: Any, logs: dict[str, Any]) -> None:
        if self.pending:
            block = self.pending.pop(0)
            params = [p for p in block.parameters()]
            for p in params:
                p.requires_grad_(True)
            t.opt.add_param_group({"params": params, "lr_mult": BACKBONE_LR_MULT, "weight_decay": self.weight_decay})


def prepare(model: CoachModel, mode: str, gradual: bool, freeze_bn: bool, weight_decay: float,
            num_classes: int) -> tuple[list[dict[str, Any]], list[Callback]]:
    """Set up model for mode (a new head; what trains, what stays frozen) and return the
    optimizer's parameter groups (the backbone at BACKBONE_LR_MULT of the head's LR) and the
    callbacks the mode needs (gradual unfreezing)."""
    model.reset_head(num_classes)
    model.features.requires_grad_(False)
    bs = blocks(model)
    trainable: list[nn.Module] = []
    if mode == "finetune-top":
        trainable = bs[-max(1, len(bs) // 3):]
        freeze_blocks_batchnorm(model, bs[:-len(trainable)])  # a frozen block's statistics stay its own
    elif mode == "finetune-all" and not gradual:
        trainable = bs
    for block in trainable:
        block.requires_grad_(True)
    if mode == "linear" or freeze_bn:
        freeze_batchnorm(model.features)
    groups = [{"params": list(model.head.parameters()), "lr_mult": 1.0, "weight_decay": weight_decay}]
    backbone = [p for p in model.features.parameters() if p.requires_grad]
    if backbone:
        groups.append({"params": backbone, "lr_mult": BACKBONE_LR_MULT, "weight_decay": weight_decay})
    extra: list[Callback] = [GradualUnfreeze(list(reversed(bs)), weight_decay)] \
        if mode == "finetune-all" and gradual else []
    return groups, extra


def transfer(source: str | Path, cfg: Config, mode: str = "auto", run_dir: str | Path | None = None,
             gradual: bool = False, freeze_bn: bool = False, data: Data | None = None) -> Run:
    if mode not in MODES:
        raise UserError(f"--mode: {mode!r}; allowed: {', '.join(MODES)}")
    if (Path(source) / "config.yaml").exists():
        # the new run directory must describe the architecture it holds: the source's
        src_cfg = Run.open(source).config
        cfg = cfg.model_copy(update={"model": src_cfg.model, "regularize": src_cfg.regularize})
    data = data if data is not None else load_data(cfg.data)
    model, report = load_source(source, cfg, data)
    reason = f"mode {mode} was asked for."
    if mode == "auto":
        mode, reason = choose_mode(model, cfg, data)
    print(f"transfer: {reason} -> {mode}")
    groups, extra = prepare(model, mode, gradual, freeze_bn, cfg.optim.weight_decay, data.num_classes)
    run_dir = Path(run_dir) if run_dir else None
    from coach.train.run import default_run_dir
    run_dir = run_dir or default_run_dir(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "transfer.json", {**report, "mode": mode, "reason": reason, "gradual": gradual,
                                           "freeze_bn": freeze_bn or mode == "linear"})
    return fit(cfg, run_dir=run_dir, data=data, model=model, groups=groups, callbacks=extra)


def zoo(roots: list[str | Path] | None = None) -> list[dict[str, Any]]:
    """Pretrained checkpoints coach produced on this machine: run directories with best weights."""
    import os

    roots = roots or ["runs"] + [r for r in os.environ.get("COACH_ZOO", "").split(os.pathsep) if r]
    found = []
    for root in roots:
        for summary in sorted(Path(root).glob("**/summary.json")):
            d = summary.parent
            if not (d / "weights" / "best.safetensors").exists():
                continue
            run = Run.open(d)
            found.append({"dir": str(d), "data": run.config.data.name, "model": run.config.model.name,
                          "classes": run.spec["num_classes"], "input_shape": run.spec["input_shape"],
                          "best": run.summary.get("best", {}).get("value")})
    return found
