"""Bugs in people's own training code, planted, and whether coach names them (Babysitter 3).

    python bench/userbugs.py [--only SUBSTRING] [--json FILE]

Each case is a hand-written loop under `coach.watch`, a Lightning module under coach's
Babysitter, `coach.check(module, data)` or a prediction, on real data (scikit-learn's digits,
8x8; a 3,000-image Fashion-MNIST subset, 28x28) with two model families (an MLP with batch
norm and dropout; a small convnet with batch norm and dropout). A planted case counts as found
when its code is named first among coach's warnings and errors (or alone); a healthy case (loops
that look like the bugs but are right: accumulation on purpose, eval/train toggled, a frozen
backbone, clipping at 1.0, a per-epoch schedule...) counts as a false alarm on any warning or
error. Prints one line per case, then recall and false alarms (targets: recall >= 95%, 0 false
alarms).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import coach  # noqa: E402
from coach.babysit.findings import problems  # noqa: E402


# ------------------------------------------------------------------ data and models
def standardized(x: torch.Tensor) -> torch.Tensor:
    return (x - x.mean()) / x.std()  # as a careful loop feeds its model (the checks would say so otherwise)


def digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits
    x, y = load_digits(return_X_y=True)
    return standardized(torch.tensor(x / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)), torch.tensor(y)


def fashion(n: int = 3000) -> tuple[torch.Tensor, torch.Tensor]:
    d = coach.load_data(coach.make_config({"data": {"name": "fashion-mnist", "limit": n}}).data)
    return standardized(d.train.x), d.train.y


DATA = {"digits": digits, "fashion": fashion}


def mlp(shape: tuple[int, ...], classes: int = 10) -> nn.Module:
    d = int(np.prod(shape))
    return nn.Sequential(nn.Flatten(), nn.Linear(d, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Dropout(0.2),
                         nn.Linear(128, classes))


def conv(shape: tuple[int, ...], classes: int = 10) -> nn.Module:
    c, h, w = shape
    return nn.Sequential(nn.Conv2d(c, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Dropout(0.2), nn.Linear(128, classes))


FAMILIES = {"mlp": mlp, "conv": conv}


class Mixer(nn.Module):
    """A model whose forward mixes the batch: a reshape across the batch axis (the planted bug)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = len(x)
        flat = x.reshape(n, -1)
        flat = flat.reshape(-1, n).t().reshape(n, -1) if n > 1 else flat  # the batch axis mixed into the features
        return self.inner(flat.reshape(x.shape))


# ------------------------------------------------------------------ hand-written loops
def hand(data: str, family: str, bug: str | None, epochs: int = 4, lr: float = 1e-3) -> list:
    """A plain loop with one bug planted (None: healthy variants by name in `bug` too)."""
    torch.manual_seed(0)
    x, y = DATA[data]()
    n = len(x) * 4 // 5
    xt, yt, xv, yv = x[:n], y[:n], x[n:], y[n:]
    model = FAMILIES[family](tuple(x.shape[1:]))
    if bug == "batch_dependence":
        model = Mixer(model)
    params = list(model.parameters())
    if bug == "params_not_updated":
        params = list(model[-1].parameters())  # only the head
    if bug == "params_not_updated/other":
        params = list(FAMILIES[family](tuple(x.shape[1:])).parameters())  # another model's
    if bug == "params_frozen":
        for p in model[-1].parameters():  # the head frozen by accident; the optimizer was built for it
            p.requires_grad_(False)
    if bug == "healthy/frozen-backbone":
        for p in list(model.parameters())[:-4]:
            p.requires_grad_(False)
    opt = torch.optim.Adam(params, lr=lr)
    steps_per_epoch = n // 50
    sched = None
    if bug == "schedule_too_fast":
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)  # an epoch schedule, stepped per batch
    if bug == "healthy/epoch-schedule":
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    if bug == "healthy/cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * steps_per_epoch)
    if bug == "training_in_eval_mode":
        model.eval()
    with coach.watch(model, opt, num_classes=10) as w:
        for epoch in range(epochs):
            order = torch.argsort(yt, stable=True) if bug == "data_not_shuffled" else torch.randperm(n)
            model.train() if bug != "training_in_eval_mode" and (epoch == 0 or bug != "training_in_eval_mode/after") \
                else None
            for i in range(steps_per_epoch):
                idx = order[i * 50:(i + 1) * 50]
                out = model(xt[idx])
                if bug == "softmax_before_loss":
                    loss = F.cross_entropy(out.softmax(1), yt[idx])
                elif bug == "loss_on_probabilities":
                    loss = F.nll_loss(out.softmax(1), yt[idx])
                elif bug == "healthy/log-softmax-nll":
                    loss = F.nll_loss(F.log_softmax(out, 1), yt[idx])
                else:
                    loss = F.cross_entropy(out, yt[idx])
                if bug == "healthy/accumulate":  # 2 micro-batches per step, on purpose
                    (loss / 2).backward()
                    if i % 2 == 1:
                        opt.step()
                        opt.zero_grad()
                    w.step(loss) if i % 2 == 1 else None
                    continue
                if bug != "grads_accumulate":
                    opt.zero_grad()
                loss.backward()
                if bug == "grad_clip_too_hard":
                    nn.utils.clip_grad_norm_(model.parameters(), 1e-3)
                if bug == "healthy/clip-1":
                    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                if sched is not None and bug != "healthy/epoch-schedule":
                    sched.step()
                w.step(loss)
            if bug == "healthy/epoch-schedule":
                sched.step()
            model.eval()
            with torch.no_grad():
                acc = (model(xv).argmax(1) == yv).float().mean().item()
            if bug not in ("training_in_eval_mode/after",):
                model.train()
            w.evaluate(val_acc=acc, val_examples=len(yv))
    return w.findings


# ------------------------------------------------------------------ Lightning
def lightning(data: str, family: str, bug: str | None, epochs: int = 3) -> list:
    import lightning.pytorch as pl
    from coach.integrations.lightning import Babysitter

    torch.manual_seed(0)
    x, y = DATA[data]()
    if bug == "data_not_shuffled":
        order = torch.argsort(y, stable=True)
        x, y = x[order], y[order]
    if bug == "labels_misaligned":
        y = torch.roll(y, 1)  # each label moved onto the next input
    net = FAMILIES[family](tuple(x.shape[1:]))

    class Lit(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = Mixer(net) if bug == "batch_dependence" else net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

        def training_step(self, batch: tuple, i: int) -> torch.Tensor:
            out = self(batch[0])
            if bug == "softmax_before_loss":
                return F.cross_entropy(out.softmax(1), batch[1])
            return F.cross_entropy(out, batch[1])

        def configure_optimizers(self) -> object:
            params = self.net[-1].parameters() if bug == "params_not_updated" else self.parameters()
            opt = torch.optim.Adam(params, lr=1e-3)
            if bug == "schedule_too_fast":  # an epoch schedule stepped every batch
                return {"optimizer": opt, "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.StepLR(opt, 1, 0.5),
                                                           "interval": "step"}}
            return opt

    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=50,
                                         shuffle=bug != "data_not_shuffled")
    sitter = Babysitter(say=lambda line: None, preflight=bug in ("labels_misaligned", "batch_dependence", None))
    trainer = pl.Trainer(max_epochs=epochs, callbacks=[sitter], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         gradient_clip_val=1e-3 if bug == "grad_clip_too_hard" else None)
    trainer.fit(Lit(), loader)
    return sitter.findings


# ------------------------------------------------------------------ check and predict
def check_case(data: str, family: str, bug: str | None) -> list:
    x, y = DATA[data]()
    if bug == "labels_misaligned":
        y = torch.roll(y, -2)
    if bug == "labels_misaligned/sorted":
        y = torch.sort(y).values  # labels sorted apart from their inputs
    torch.manual_seed(0)
    model = FAMILIES[family](tuple(x.shape[1:]))
    return coach.check(Mixer(model) if bug == "batch_dependence" else model, (x, y), probe_steps=20,
                       range_steps=30, overfit_steps=60).findings


def predict_case(data: str, family: str, bug: str | None) -> list:
    from coach.babysit.findings import Finding
    x, y = DATA[data]()
    torch.manual_seed(0)
    run = coach.fit(FAMILIES[family](tuple(x.shape[1:])), (x, y), epochs=1, progress=False)
    scale = {"input_scale_mismatch": 255.0, "healthy/same-scale": 1.0}[bug or "healthy/same-scale"]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        run.predict(x[:100] * scale)
    return [Finding("input_scale_mismatch", "warning", str(w.message), "") for w in seen
            if "input_scale_mismatch" in str(w.message)]


KINDS = {"hand": hand, "lightning": lightning, "check": check_case, "predict": predict_case}
CASES = [  # (kind, data, family, planted code or healthy/name)
    ("hand", "digits", "mlp", "grads_accumulate"), ("hand", "fashion", "conv", "grads_accumulate"),
    ("hand", "digits", "conv", "softmax_before_loss"), ("lightning", "fashion", "mlp", "softmax_before_loss"),
    ("hand", "digits", "mlp", "loss_on_probabilities"), ("hand", "fashion", "conv", "loss_on_probabilities"),
    ("hand", "digits", "mlp", "training_in_eval_mode"), ("hand", "fashion", "conv", "training_in_eval_mode/after"),
    ("hand", "digits", "conv", "params_not_updated"), ("hand", "fashion", "mlp", "params_not_updated/other"),
    ("lightning", "digits", "mlp", "params_not_updated"),
    ("hand", "digits", "mlp", "params_frozen"), ("hand", "fashion", "conv", "params_frozen"),
    ("hand", "digits", "mlp", "batch_dependence"), ("check", "fashion", "conv", "batch_dependence"),
    ("lightning", "digits", "conv", "batch_dependence"),
    ("check", "digits", "mlp", "labels_misaligned"), ("check", "fashion", "conv", "labels_misaligned/sorted"),
    ("lightning", "digits", "mlp", "labels_misaligned"),
    ("hand", "digits", "mlp", "data_not_shuffled"), ("lightning", "fashion", "conv", "data_not_shuffled"),
    ("hand", "digits", "conv", "grad_clip_too_hard"), ("lightning", "fashion", "mlp", "grad_clip_too_hard"),
    ("hand", "fashion", "mlp", "schedule_too_fast"), ("lightning", "digits", "conv", "schedule_too_fast"),
    ("predict", "digits", "mlp", "input_scale_mismatch"), ("predict", "fashion", "conv", "input_scale_mismatch"),
    # healthy loops that look like the bugs
    ("hand", "digits", "mlp", "healthy/plain"), ("hand", "fashion", "conv", "healthy/accumulate"),
    ("hand", "digits", "conv", "healthy/toggled"), ("hand", "fashion", "mlp", "healthy/frozen-backbone"),
    ("hand", "digits", "mlp", "healthy/clip-1"), ("hand", "fashion", "conv", "healthy/epoch-schedule"),
    ("hand", "digits", "conv", "healthy/cosine"), ("hand", "fashion", "mlp", "healthy/log-softmax-nll"),
    ("lightning", "digits", "mlp", None), ("lightning", "fashion", "conv", None),
    ("check", "digits", "conv", None), ("predict", "fashion", "mlp", None),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", help="run the cases whose name contains this")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows = []
    for kind, data, family, bug in CASES:
        name = f"{kind}/{data}/{family}/{bug or 'healthy'}"
        if args.only and args.only not in name:
            continue
        t0 = time.time()
        planted = bug.split("/")[0] if bug and not bug.startswith("healthy") else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = problems(KINDS[kind](data, family, bug if bug != "healthy/toggled" else None))
        codes = [f.code for f in found]
        ok = (bool(codes) and codes[0] == planted) if planted else not codes
        rows.append({"case": name, "planted": planted, "codes": codes, "ok": ok, "seconds": time.time() - t0})
        print(f"{'ok ' if ok else 'MISS' if planted else 'FALSE ALARM'}  {name:<55} {codes}  "
              f"({time.time() - t0:.0f}s)", flush=True)
    planted = [r for r in rows if r["planted"]]
    healthy = [r for r in rows if not r["planted"]]
    found = sum(r["ok"] for r in planted)
    alarms = sum(not r["ok"] for r in healthy)
    print(f"recall {found}/{len(planted)} = {found / max(len(planted), 1):.0%} (target >= 95%); false alarms "
          f"{alarms}/{len(healthy)} (target 0)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
