"""Planted faults: does `coach check` name the cause it was given, and only that?

    python bench/planted.py [--only NAME...] [--json OUT]

Each broken setup plants one fault (a learning rate, an initialization, a regularizer, a
model too small, inputs left unnormalized, shuffled labels, a wrong backward pass) into a
config that is otherwise healthy, over four data sources (scikit-learn digits as 8x8 images
and as 64-vectors, MNIST-1D signals, a Fashion-MNIST subset) and four model families (MLP,
1-D conv, 2-D conv, ResNet). Each lists the finding codes that name its cause. The healthy
setups are the same configs without a fault.

A *claim* is a finding of severity warning or error (info findings are remarks, e.g. the
LR range test's suggestion, and make `coach check` exit 0). Printed:
  recall        broken setups where a claim names the planted cause
  precision     claims, over all setups, that name a planted cause
  false alarms  healthy setups with any claim
Targets (issue 14): recall >= 95%, precision >= 90%, 0 false alarms.

--heldout adds a second group, printed apart: faults of other strengths on two tabular
sources (scikit-learn's breast cancer and wine, raw feature scales) and families not
paired with those faults above, written after the rules and thresholds were settled and
run once to measure them, not to tune them.

The plain baseline beside it is the first `coach check` (the version before the
differential diagnosis): run it from an older checkout with the same script to compare.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from coach.babysit import check  # noqa: E402
from coach.config import ACTIVATIONS, make_config  # noqa: E402
from coach.data import load_data  # noqa: E402


class _WrongTanhGrad(torch.autograd.Function):
    """tanh whose backward uses 1 - y instead of 1 - y^2: the kind of bug a custom layer has."""

    @staticmethod
    def forward(ctx, x):
        y = torch.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * (1 - y)


class WrongTanh(nn.Module):
    def forward(self, x):
        return _WrongTanhGrad.apply(x)


# a user's own activation, registered the way coach's are (the planted backward bug)
if "wrong_tanh" not in ACTIVATIONS:
    ACTIVATIONS.register("wrong_tanh")(lambda: WrongTanh())

FAMILIES = {
    "mlp": ["model.name=mlp", "model.width=64", "model.depth=2"],
    "conv1d": ["model.name=convnet", "model.width=16", "model.blocks=1"],
    "conv2d": ["model.name=convnet", "model.width=16", "model.blocks=1"],
    "resnet": ["model.name=resnet", "model.width=16", "model.blocks=1"],
}
SOURCES = {
    "digits": ["data.name=digits"],
    "mnist1d": ["data.name=mnist1d", "data.limit=3000"],
    "fashion": ["data.name=fashion-mnist", "data.limit=3000"],
    # held out: tabular data (scikit-learn's raw features), first run after the rules were set
    "cancer": ["data.name=npz"], "wine": ["data.name=npz"],
}
TABULAR = {"cancer": "load_breast_cancer", "wine": "load_wine"}
BASE = ["train.batch_size=64", "optim.name=adam", "optim.lr=1e-3"]

# fault name -> (overrides, acceptable codes, data variant)
FAULTS = {
    "lr_far_too_high": (["optim.name=sgd", "optim.lr=20"], {"lr_too_high", "nonfinite"}, None),
    "adam_lr_1": (["optim.lr=1.0"], {"lr_too_high", "nonfinite"}, None),
    "lr_far_too_low": (["optim.name=sgd", "optim.lr=1e-6"], {"lr_too_low"}, None),
    "tanh_std_1": (["model.activation=tanh", "model.init=small", "model.init_kwargs={std: 1.0}",
                    "model.norm=none", "model.depth=6"],
                   {"saturation", "init_exploding", "initial_loss_mismatch", "cannot_overfit"}, None),
    "relu_std_1": (["model.init=small", "model.init_kwargs={std: 1.0}", "model.norm=none", "model.depth=6"],
                   {"init_exploding", "initial_loss_mismatch", "cannot_overfit", "lr_too_high"}, None),
    "relu_std_0.01": (["model.init=small", "model.init_kwargs={std: 0.01}", "model.norm=none", "model.depth=6"],
                      {"init_vanishing", "cannot_overfit", "lr_too_low"}, None),
    "tanh_std_0.01": (["model.activation=tanh", "model.init=small", "model.init_kwargs={std: 0.01}",
                       "model.norm=none", "model.depth=6"], {"init_vanishing", "cannot_overfit", "lr_too_low"},
                      None),
    "dropout_0.95": (["regularize.dropout=0.95"], {"regularization_too_strong"}, None),
    "spatial_dropout_0.95": (["regularize.spatial_dropout=0.95"], {"regularization_too_strong"}, None),
    "stochastic_depth_0.95": (["regularize.stochastic_depth=0.95", "model.blocks=2"],
                              {"regularization_too_strong"}, None),
    "adam_weight_decay_1": (["optim.weight_decay=1.0"], {"regularization_too_strong"}, None),
    "l2_0.5": (["regularize.l2=0.5"], {"regularization_too_strong"}, None),
    "l1_0.1": (["regularize.l1=0.1"], {"regularization_too_strong"}, None),
    "two_hidden_units": (["model.hidden=[2]", "model.norm=none"], {"cannot_overfit"}, None),
    "one_channel": (["model.width=1"], {"cannot_overfit"}, None),
    "not_normalized": (["data.preprocess=none"], {"data_not_normalized"}, "offset"),
    "shuffled_labels": ([], {"label_problem"}, "shuffled"),
    "wrong_backward": (["model.activation=wrong_tanh", "model.init=xavier"], {"gradient_check_failed"}, None),
    # held-out variants: other strengths of the same faults
    "sgd_lr_5": (["optim.name=sgd", "optim.lr=5", "model.norm=none"], {"lr_too_high", "nonfinite"}, None),
    "adam_lr_1e-7": (["optim.lr=1e-7"], {"lr_too_low"}, None),
    "dropout_0.9": (["regularize.dropout=0.9"], {"regularization_too_strong"}, None),
    "l2_0.2": (["regularize.l2=0.2"], {"regularization_too_strong"}, None),
    "sgd_weight_decay_3": (["optim.name=momentum", "optim.lr=0.01", "optim.weight_decay=3"],
                           {"regularization_too_strong"}, None),
    "sigmoid_std_1": (["model.activation=sigmoid", "model.init=small", "model.init_kwargs={std: 1.0}",
                       "model.norm=none", "model.depth=5"],
                      {"saturation", "init_exploding", "initial_loss_mismatch", "cannot_overfit"}, None),
    "raw_features": (["data.preprocess=none"], {"data_not_normalized"}, None),
    "one_hidden_unit": (["model.hidden=[1]", "model.norm=none"], {"cannot_overfit"}, None),
}

# (source, family, fault): the broken setups
BROKEN = [
    *[("digits", "mlp", f) for f in ("lr_far_too_high", "adam_lr_1", "lr_far_too_low", "tanh_std_1", "relu_std_1",
                                     "relu_std_0.01", "tanh_std_0.01", "dropout_0.95", "adam_weight_decay_1",
                                     "l2_0.5", "l1_0.1", "two_hidden_units", "not_normalized", "shuffled_labels",
                                     "wrong_backward")],
    *[("mnist1d", "conv1d", f) for f in ("lr_far_too_high", "lr_far_too_low", "spatial_dropout_0.95",
                                         "adam_weight_decay_1", "one_channel", "not_normalized", "shuffled_labels",
                                         "wrong_backward")],
    *[("fashion", "conv2d", f) for f in ("adam_lr_1", "lr_far_too_low", "dropout_0.95", "l2_0.5", "not_normalized",
                                         "shuffled_labels")],
    *[("digits", "resnet", f) for f in ("lr_far_too_high", "stochastic_depth_0.95", "adam_weight_decay_1",
                                        "shuffled_labels", "wrong_backward")],
    *[("mnist1d", "mlp", f) for f in ("tanh_std_1", "relu_std_0.01", "two_hidden_units", "dropout_0.95")],
]
# held out: set up after the rules and thresholds above were fixed, and run once to measure them
HELDOUT = [
    *[("cancer", "mlp", f) for f in ("sgd_lr_5", "adam_lr_1e-7", "dropout_0.9", "l2_0.2", "sgd_weight_decay_3",
                                     "sigmoid_std_1", "raw_features", "shuffled_labels", "wrong_backward")],
    *[("wine", "mlp", f) for f in ("sgd_lr_5", "dropout_0.9", "raw_features", "shuffled_labels", "one_hidden_unit")],
    *[("fashion", "resnet", f) for f in ("sgd_lr_5", "l2_0.2", "shuffled_labels")],
    *[("mnist1d", "resnet", f) for f in ("adam_lr_1e-7", "dropout_0.9")],
]
HELDOUT_HEALTHY = [
    ("cancer", "mlp", []), ("cancer", "mlp", ["regularize.dropout=0.5", "model.activation=tanh", "model.init=xavier"]),
    ("wine", "mlp", []), ("wine", "mlp", ["optim.name=momentum", "optim.lr=0.05", "optim.weight_decay=5e-4"]),
    ("fashion", "resnet", ["model.blocks=2", "regularize.stochastic_depth=0.1"]),
    ("mnist1d", "mlp", ["model.activation=tanh", "model.init=xavier"]),
]
HEALTHY = [
    ("digits", "mlp", []), ("digits", "mlp", ["model.activation=tanh", "model.init=xavier", "model.norm=none"]),
    ("digits", "mlp", ["regularize.dropout=0.3", "optim.weight_decay=5e-4"]),
    ("digits", "mlp", ["regularize.dropout=0.5"]),
    ("digits", "mlp", ["optim.name=momentum", "optim.lr=0.05"]),
    ("digits", "conv2d", []), ("digits", "resnet", ["regularize.label_smoothing=0.1"]),
    ("digits", "resnet", ["regularize.stochastic_depth=0.2", "model.blocks=2"]),
    ("mnist1d", "conv1d", []), ("mnist1d", "conv1d", ["regularize.spatial_dropout=0.1"]),
    ("mnist1d", "conv1d", ["regularize.spatial_dropout=0.3"]),
    ("mnist1d", "mlp", ["model.width=128", "regularize.l2=1e-4"]), ("mnist1d", "resnet", []),
    ("fashion", "conv2d", []), ("fashion", "conv2d", ["regularize.dropout=0.5", "regularize.l2=5e-4"]),
    ("fashion", "mlp", ["model.activation=leaky_relu"]),
    ("fashion", "resnet", ["optim.name=adamw", "optim.weight_decay=0.05"]),
]


def variant_path(tmp: Path, source: str, variant: str | None) -> str:
    """An npz of the source's training inputs with the fault in the data: labels shuffled,
    or inputs moved far off centre (mean 100, a tenth of their spread); tabular sources as
    scikit-learn ships them (raw feature scales)."""
    path = tmp / f"{source}-{variant}.npz"
    if source in TABULAR and not path.exists():
        import sklearn.datasets
        x, y = getattr(sklearn.datasets, TABULAR[source])(return_X_y=True)
        if variant == "shuffled":
            y = np.random.default_rng(0).permutation(y)
        np.savez(path, x=x.astype(np.float32), y=y)
    if not path.exists():
        cfg = make_config(None, SOURCES[source] + ["data.preprocess=none"])
        d = load_data(cfg.data, 0)
        x, y = d.train.x.numpy(), d.train.y.numpy()
        if variant == "shuffled":
            y = np.random.default_rng(0).permutation(y)
        else:
            x = 100 + 0.1 * (x - x.mean()) / (x.std() + 1e-8)
        np.savez(path, x=x.astype(np.float32), y=y)
    return str(path)


def setup(tmp: Path, source: str, family: str, overrides: list[str], variant: str | None) -> list[str]:
    data = SOURCES[source] if variant is None and source not in TABULAR else \
        [f"data.path={variant_path(tmp, source, variant)}"]
    if variant is not None and source not in TABULAR:
        data += [f"data.layout={'signal' if source == 'mnist1d' else 'image'}"]
    return BASE + data + FAMILIES[family] + overrides


def run_case(overrides: list[str]) -> tuple[list[tuple[str, str]], float]:
    cfg = make_config(None, overrides)
    t = time.perf_counter()
    result = check(cfg)
    return [(f.code, f.severity) for f in result.findings], time.perf_counter() - t


def summarize(rows: list[dict], title: str) -> None:
    broken = [r for r in rows if r["acceptable"]]
    healthy = [r for r in rows if not r["acceptable"]]
    claims = sum(len(r["claims"]) for r in rows)
    right = sum(len(r["right"]) for r in rows)
    found = sum(bool(r["right"]) for r in broken)
    alarms = sum(bool(r["claims"]) for r in healthy)
    print(f"\n{title}: broken setups: {len(broken)}, healthy: {len(healthy)}, "
          f"{len({r['case'].split('/')[0] for r in rows})} data sources, "
          f"{len({r['case'].split('/')[1] for r in rows})} model families")
    if broken:
        print(f"recall     {found}/{len(broken)} = {found / len(broken):.1%}   (target >= 95%)")
    if claims:
        print(f"precision  {right}/{claims} = {right / claims:.1%}   (target >= 90%)")
    print(f"false alarms on healthy setups: {alarms}/{len(healthy)}   (target 0)")
    print(f"time: {sum(r['seconds'] for r in rows):.0f}s")


def cases(broken: list, healthy: list, group: str) -> list[tuple]:
    return [(f"{s}/{m}/{f}", s, m, FAULTS[f][0], FAULTS[f][2], FAULTS[f][1], group) for s, m, f in broken] + \
        [(f"{s}/{m}/healthy{i}", s, m, o, None, None, group) for i, (s, m, o) in enumerate(healthy)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", help="run only the cases whose name contains one of these")
    ap.add_argument("--heldout", action="store_true", help="also the held-out cases (tabular data, other strengths)")
    ap.add_argument("--json", help="write every case's findings here")
    args = ap.parse_args()
    todo = cases(BROKEN, HEALTHY, "main") + (cases(HELDOUT, HELDOUT_HEALTHY, "held-out") if args.heldout else [])
    if args.only:
        todo = [c for c in todo if any(k in c[0] for k in args.only)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, source, family, overrides, variant, ok, group in todo:
            findings, secs = run_case(setup(Path(tmp), source, family, overrides, variant))
            claims = [c for c, sev in findings if sev in ("warning", "error")]
            right = [c for c in claims if ok and c in ok]
            rows.append({"case": name, "group": group, "acceptable": sorted(ok) if ok else [], "claims": claims,
                         "right": right, "findings": findings, "seconds": round(secs, 1)})
            mark = ("found" if right else "MISSED") if ok else ("ok" if not claims else "FALSE ALARM")
            wrong = [c for c in claims if not ok or c not in ok]
            print(f"{name:<40} {mark:<11} claims {claims}" + (f"  wrong: {wrong}" if wrong else "") +
                  f"  ({secs:.1f}s)", flush=True)
    for group in dict.fromkeys(r["group"] for r in rows):
        summarize([r for r in rows if r["group"] == group], group)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
