"""coach's babysitter for a Lightning `LightningModule` + `Trainer`:

    from coach.integrations.lightning import Babysitter
    trainer = L.Trainer(max_epochs=10, callbacks=[Babysitter(out="runs/mine")])
    trainer.fit(module, train_loader, val_loader)
    # the pre-flight findings were said before the first step; the curve diagnosis at the end

Before the first step (pre-flight, on copies of the module: it is never trained by them):
`coach check` on the first training batches, with the optimizer Lightning built (its kind, LR
and weight decay) and the module's own inputs (no preprocessing added): the data, the
activations at init, the initial loss against log C, a gradient check, overfitting a small
sample, the LR range test and the lectures' LR probe. For a classifier whose forward returns
class scores (N x C). During training: coach.watch's monitors (update/weight ratios, gradient
histograms, activations on a fixed probe batch) and the loss and LR of every step; the
validation metrics the module logs as val_acc / val_loss (or val/acc...). At the end: the
curve diagnosis and, with `out`, a run folder with report.html (check included).

Needs `lightning` (an optional extra: pip install 'coach[lightning]').
"""
from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

try:
    import lightning.pytorch as pl
except ImportError:  # the extra is not installed: one line says how to get it
    raise ImportError("coach.integrations.lightning needs lightning: pip install 'coach[lightning]' "
                      "(or pip install lightning)") from None

from coach.babysit import CheckResult, check
from coach.babysit.checks import named_misalignment
from coach.babysit.findings import Finding, merged
from coach.babysit.userbugs import label_alignment
from coach.errors import UserError
from coach.train.checkpoint import rng_state, set_rng_state
from coach.train.run import write_json
from coach.watch import Watch

KNOWN = ("val_acc", "val_loss", "train_acc", "train_loss")  # what the curve diagnosis reads


def first_batches(loader: Any, examples: int) -> tuple[Tensor, Tensor]:
    """(inputs, labels) of the loader's first batches, up to `examples`."""
    xs, ys, n = [], [], 0
    for batch in loader:
        if not isinstance(batch, (tuple, list)) or len(batch) < 2 or not all(isinstance(b, Tensor) for b in batch[:2]):
            raise UserError("coach Babysitter: the pre-flight checks need (inputs, labels) batches of tensors; this "
                            f"train loader yields {type(batch).__name__}: pass Babysitter(preflight=False)")
        xs.append(batch[0].detach().cpu())
        ys.append(batch[1].detach().cpu())
        n += len(batch[0])
        if n >= examples:
            break
    if not xs:
        raise UserError("coach Babysitter: the train loader yielded no batches")
    return torch.cat(xs)[:examples], torch.cat(ys)[:examples]


def loader_of(module: pl.LightningModule) -> Any:
    trainer = module._trainer
    return trainer.train_dataloader if trainer is not None else None


def dataset_alignment(loader: Any, n: int = 3000) -> Finding | None:
    """labels_misaligned read off the loader's dataset in its own order (a shuffling loader hides
    where a label sits against its input); None when the dataset cannot be indexed as (x, y)."""
    data = getattr(loader, "dataset", None)
    try:
        items = [data[i] for i in range(min(n, len(data)))]
        x = torch.stack([torch.as_tensor(it[0]) for it in items]).float()
        y = torch.as_tensor([int(it[1]) for it in items])
    except Exception:  # not a map-style dataset of (input, label): nothing to read in order
        return None
    return label_alignment(x, y)


def detached_copy(module: pl.LightningModule) -> nn.Module:
    """A CPU copy of the module without its Trainer (a deep copy would copy the Trainer too)."""
    trainer = module._trainer
    module._trainer = None
    try:
        return copy.deepcopy(module).cpu()
    finally:
        module._trainer = trainer


def logged(metrics: dict[str, Any]) -> dict[str, float]:
    """The metrics the module logged that the diagnosis reads (val/acc and val_acc alike)."""
    out = {}
    for k, v in metrics.items():
        key = k.replace("/", "_").removesuffix("_epoch")
        if key in KNOWN:
            out[key] = float(v)
    return out


class Babysitter(pl.Callback):
    """coach's pre-flight checks and monitors for a LightningModule (see the module's docstring).
    out: a run folder (report.html, metrics, monitors, check.json); every: monitor sampling
    interval in optimizer steps; preflight: run coach check first, on up to `examples` training
    examples (probe_steps/range_steps/overfit_steps bound its cost); say: where lines go."""

    def __init__(self, out: str | Path | None = None, every: int = 50, preflight: bool = True, examples: int = 1000,
                 probe_steps: int = 50, range_steps: int = 60, overfit_steps: int = 200,
                 say: Callable[[str], None] | None = None):
        self.out = Path(out) if out is not None else None
        self.every, self.preflight, self.examples = every, preflight, examples
        self.steps = {"probe_steps": probe_steps, "range_steps": range_steps, "overfit_steps": overfit_steps}
        self.say = say or (lambda line: print(line, file=sys.stderr, flush=True))
        self.check: CheckResult | None = None
        self.watch: Watch | None = None
        self.findings: list[Finding] = []

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        # it observes: reading batches and the checks (which seed their own copies) draw random
        # numbers, so the random streams are put back as they were and training is the same with it
        state = rng_state()
        try:
            self._start(trainer, pl_module)
        finally:
            set_rng_state(state)

    def _start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        optimizer = trainer.optimizers[0]
        try:
            x, y = first_batches(trainer.train_dataloader, self.examples)
        except UserError:
            if self.preflight:
                raise
            x = y = None  # batches coach cannot read: the probe is the first input the module's forward sees
        num_classes = None
        if x is not None:
            with torch.no_grad():
                was = pl_module.training
                pl_module.eval()
                scores = pl_module(x[:2].to(pl_module.device))
                pl_module.train(was)
            num_classes = int(scores.shape[1]) if scores.ndim == 2 else None
        if self.preflight:
            self.check = self.run_preflight(pl_module, optimizer, x, y, num_classes)
        self.watch = Watch(pl_module, optimizer, self.out, self.every, num_classes=num_classes, closure=True,
                           probe=x[:128].to(pl_module.device) if x is not None else None)
        self.watch.__enter__()

    def run_preflight(self, module: pl.LightningModule, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor,
                      num_classes: int | None) -> CheckResult:
        """coach check on copies of the module, with Lightning's optimizer as coach reads it."""
        cfg = Watch(module, optimizer).config().replace(**{
            "data.preprocess": "none", "data.val_fraction": 0.2,  # the module's inputs as Lightning feeds them
            "train.batch_size": max(2, min(len(x) // 4, 128))})
        classes = {"classes": [str(i) for i in range(num_classes)]} if num_classes else {}
        self.say("coach pre-flight (coach check on a copy of the module):")
        result = check(cfg, {"x": x.numpy(), "y": y.numpy(), **classes}, model=detached_copy(module),
                       say=lambda line: self.say("  " + line), **self.steps)
        aligned = dataset_alignment(loader_of(module))
        if aligned is not None:  # labels against inputs in the dataset's own order (the loader shuffles it)
            result.findings = merged(named_misalignment([aligned, *result.findings]))
        for f in result.findings:
            self.say(f"  {f.severity}: {f.code}: {f.message}")
        if self.out is not None:
            self.out.mkdir(parents=True, exist_ok=True)
            write_json(self.out / "check.json", result.to_dict())
        return result

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: Tensor) -> None:
        if self.watch is not None:  # the loss with its graph (on_train_batch_end gets a detached copy)
            self.watch.inspector.read_loss(loss, self.watch.steps + 1)

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                                 optimizer: torch.optim.Optimizer) -> None:
        if self.watch is not None:  # after the closure's backward: the gradients exist now
            self.watch.before_update()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.watch is None:
            return
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, (Tensor, float, int)):
            self.watch.step(loss)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.watch is not None:  # None during Lightning's sanity check, which runs before on_train_start
            metrics = logged(trainer.callback_metrics)
            if metrics:
                self.watch.evaluate(**metrics)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.watch is None:
            return
        self.watch.__exit__(None, None, None)
        self.findings = merged((self.check.findings if self.check else []) + self.watch.findings)
        self.say("coach: " + ("; ".join(f"{f.severity}: {f.code}: {f.message}" for f in self.watch.findings)
                              or "the curves look healthy")
                 + (f" (report: {self.out / 'report.html'})" if self.out else ""))
