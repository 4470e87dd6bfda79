"""The README's reference sections, generated from the code so they cannot drift from it:
every config key (type, default, allowed values or range, what it does, the lecture it comes
from) and every finding code (what it means, what to do). tests/test_reference.py checks
that README.md holds exactly what this module writes; `python -m coach.reference` rewrites
the README's blocks after a change.

Lectures (../shared/seeds): L5 = CS231n 2016 lecture 5, L6 = CS231n 2024 lecture 6 slides
(and their appendix), L7 = CS231n 2017 lecture 7.
"""
from __future__ import annotations

import sys
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from coach.atomic import atomic_write_bytes
import coach  # noqa: F401  (fills the registries whose names are the allowed values)
from coach.babysit.findings import ADVICE, CODES, FOUND_BY, SEVERITY
from coach.config import ACTIVATIONS, DATASETS, INITS, LOSSES, MODELS, OPTIMIZERS, SCHEDULES, Config

# What each key does, where the field itself carries no description.
DOC = {
    "seed": "seeds every random stream (python, numpy, torch, augmentation); runs repeat bit for bit",
    "data.name": "the source (`coach datasets`); left out, data.path decides (coach.data.sources), "
                 "and without a path fashion-mnist",
    "data.path": "an .npz (x, y, optionally x_test, y_test, classes), a folder of class folders (or train/ "
                 "and test/), or a folder of IDX or CIFAR files",
    "data.val_fraction": "share of the training split held out for validation (stratified)",
    "data.test_fraction": "share carved as the test split when the source has none",
    "data.split_seed": "seed of the train/val split, apart from `seed`, so runs share one validation set",
    "data.preprocess": "fitted on the training split, saved inside the model",
    "data.zca_epsilon": "ZCA whitening's regularizer",
    "data.image_size": "image folders: resize to (height, width)",
    "data.color": "image folders: colour or grayscale (auto: from the files)",
    "data.layout": "npz: read x as vectors, 1-D signals or images (auto: from its shape)",
    "model.name": "the builder: an MLP, a VGG-style convnet, or a ResNet (1-D or 2-D from the data); module: your "
                  "own nn.Module, passed from Python (coach.fit(my_module, ...))",
    "model.activation": "the nonlinearity",
    "model.activation_kwargs": "its parameters, e.g. {negative_slope: 0.1} for leaky_relu",
    "model.init": "weight initialization",
    "model.init_kwargs": "its parameters, e.g. {std: 0.01} for small",
    "model.width": "units or channels of the first layer or stage (stages double it)",
    "model.depth": "hidden layers (mlp) or stages (convnet, resnet)",
    "model.hidden": "mlp: explicit hidden sizes, overriding width and depth",
    "model.norm": "batch norm after each weighted layer, or none",
    "model.pool": "convnet downsampling: max, average or fractional max pooling",
    "regularize.dropout": "drop probability (the lectures' keep probability is 1 - this)",
    "regularize.spatial_dropout": "convnet: drop whole channels",
    "regularize.dropconnect": "mlp: drop individual weights in training",
    "regularize.decay_bias_and_norm": "also regularize biases and norm parameters (off: weights only)",
    "regularize.label_smoothing": "cross-entropy against (1 - eps) one-hot + eps uniform",
    "augment.hflip": "images: mirror left-right with probability 1/2",
    "augment.resized_crop": "images: random area and aspect ratio, resized back",
    "augment.crop_scale": "resized_crop: area fraction range",
    "augment.crop_ratio": "resized_crop: aspect ratio range",
    "augment.brightness": "images: add U(-b, b) per image",
    "augment.contrast": "images: scale around the mean by U(1 - c, 1 + c)",
    "augment.cutmix": "images: Beta(alpha, alpha) box pasted from another image; 0 = off (with mixup: "
                      "one of them per batch)",
    "optim.name": "the update rule",
    "optim.lr": "the learning rate (the first hyperparameter to tune)",
    "optim.momentum": "momentum and nesterov: the velocity's decay (rho)",
    "optim.weight_decay": "coupled L2 in the gradient (sgd, adam, ...) or decoupled (adamw)",
    "optim.betas": "adam/adamw: first and second moment decays",
    "optim.eps": "adam/adamw/rmsprop/adagrad: added to the denominator",
    "schedule.name": "learning-rate schedule, a function of the step",
    "schedule.min_lr": "floor of cosine and linear decay",
    "train.epochs": "passes over the training split",
    "train.max_steps": "stop after this many steps whatever epochs says",
    "train.batch_size": "examples per step (under DDP: the global batch)",
    "train.loss": "softmax cross-entropy or the multiclass SVM (hinge)",
    "train.device": "auto: cuda, else mps, else cpu",
    "train.grad_clip": "clip the global gradient norm to this",
    "train.monitor": "the validation metric that picks the best checkpoint and drives early stopping",
    "train.mode": "max for accuracies, min for losses",
    "train.log_every": "steps between metrics.jsonl step records",
    "train.snapshots": "save the weights at each cycle end of schedule.name=cyclic (snapshot ensembles)",
    "train.progress": "a bar in a terminal or notebook, a line per evaluation elsewhere; false = silent",
    "train.max_rollbacks": "roll-backs (each halving the LR) before the run stops as diverged",
    "search": "the search space: dotted key -> loguniform(a, b), uniform(a, b), int(a, b), logint(a, b), "
              "choice([...]) or grid([...])",
}

SECTION_LECTURE = {
    "seed": "-", "data": "L6 data preprocessing", "model": "L6 activations, initialization, batch norm",
    "regularize": "L6-L7 regularization", "augment": "L7 data augmentation", "optim": "L7 optimization",
    "schedule": "L7 learning-rate decay", "train": "L6 babysitting the learning process",
    "search": "L6 hyperparameter optimization",
}
LECTURE = {
    "data.path": "-", "data.image_size": "-", "data.color": "-", "data.layout": "-", "data.limit": "-",
    "data.per_class": "L6 transfer learning (little data)", "data.classes": "-",
    "model.pool": "L6 appendix: fractional pooling", "model.name": "L6 (ResNet: He et al. 2016)",
    "regularize.dropconnect": "L6 appendix: DropConnect", "regularize.stochastic_depth": "L6 appendix: stochastic depth",
    "regularize.label_smoothing": "beyond the lectures (Szegedy et al. 2016)",
    "augment.mixup": "L6 appendix: mixup", "augment.pca_jitter": "L6 appendix: PCA colour jitter (AlexNet)",
    "augment.cutmix": "beyond the lectures (Yun et al. 2019)", "augment.cutout": "beyond the lectures (DeVries & "
                                                                              "Taylor 2017)",
    "schedule.warmup": "beyond the lectures (Goyal et al. 2017)",
    "schedule.cycles": "L7 snapshot ensembles (SGDR cycles)", "train.snapshots": "L7 snapshot ensembles",
    "train.ema": "L7 Polyak averaging", "train.early_stopping": "L7 early stopping",
    "train.loss": "L2-L3 losses (softmax, SVM)", "train.grad_clip": "beyond the lectures (Pascanu et al. 2013)",
    "train.device": "-", "train.precision": "-", "train.channels_last": "-", "train.sync_batchnorm": "-",
    "train.time_budget": "-", "train.fit_to_budget": "-", "train.progress": "-", "train.log_every": "-",
    "train.checkpoint_every": "-", "train.max_nonfinite": "-", "train.max_rollbacks": "-",
}

REGISTRY = {"data.name": DATASETS, "model.name": MODELS, "model.init": INITS, "optim.name": OPTIMIZERS,
            "schedule.name": SCHEDULES, "train.loss": LOSSES}


def _type(ann: Any) -> str:
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is typing.Literal:
        return "str"
    if origin is typing.Annotated:
        return _type(args[0])
    if origin in (typing.Union, types.UnionType):
        named = [_type(a) for a in args if a is not type(None)]
        return " or ".join(named) + (" or null" if type(None) in args else "")
    if origin is list:
        return f"list[{_type(args[0])}]"
    if origin is tuple:
        return "(" + ", ".join(_type(a) for a in args) + ")"
    if origin is dict:
        return f"dict[{_type(args[0])}, {_type(args[1])}]"
    return ann.__name__ if isinstance(ann, type) else str(ann)


def _allowed(key: str, field: Any) -> str:
    if key in REGISTRY:
        return ", ".join(REGISTRY[key].names())
    if key == "model.activation":
        return ", ".join(ACTIVATIONS.names())
    args = typing.get_args(field.annotation)
    if typing.get_origin(field.annotation) is typing.Literal:
        return ", ".join(str(a) for a in args)
    bounds = []
    for m in field.metadata:
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if getattr(m, attr, None) is not None:
                bounds.append(f"{sign} {getattr(m, attr):g}")
    return ", ".join(bounds)


def _default(field: Any) -> str:
    if field.default_factory is not None:
        return f"`{field.default_factory()!r}`".replace("'", "")
    v = field.default
    return "`null`" if v is None else f"`{str(v).lower() if isinstance(v, bool) else v}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def keys() -> list[tuple[str, Any]]:
    """(dotted key, pydantic field) for every config key, in the schema's order."""
    out = []
    for section, field in Config.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += [(f"{section}.{k}", f) for k, f in ann.model_fields.items()]
        else:
            out.append((section, field))
    return out


def config_reference() -> str:
    rows = ["| key | type | default | allowed | what it does | lecture |", "|---|---|---|---|---|---|"]
    for key, field in keys():
        section = key.split(".")[0]
        what = field.description or DOC.get(key, "")
        rows.append(f"| `{key}` | {_cell(_type(field.annotation))} | {_cell(_default(field))} | "
                    f"{_cell(_allowed(key, field))} | {_cell(what)} | "
                    f"{LECTURE.get(key, SECTION_LECTURE[section])} |")
    return "\n".join(rows)


def findings_reference() -> str:
    rows = ["| code | usual severity | what it means | what to do | found by |", "|---|---|---|---|---|"]
    for code, meaning in CODES.items():
        rows.append(f"| `{code}` | {SEVERITY[code]} | {_cell(meaning)} | {_cell(ADVICE[code])} | {FOUND_BY[code]} |")
    return "\n".join(rows)


BLOCKS = {"config-reference": config_reference, "findings-reference": findings_reference}


def fill(text: str) -> str:
    """text with every generated block replaced by what the code says now."""
    for name, make in BLOCKS.items():
        start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
        if start not in text or end not in text:
            raise ValueError(f"README.md has no {start} ... {end} block")
        head, rest = text.split(start, 1)
        text = head + start + "\n" + make() + "\n" + end + rest.split(end, 1)[1]
    return text


if __name__ == "__main__":
    readme = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "README.md")
    atomic_write_bytes(readme, fill(readme.read_text()).encode())
    print(f"wrote the reference blocks of {readme}")
