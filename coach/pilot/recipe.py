"""The autopilot's starting point: the data section for what the user gave, and the plain
recipe for that shape of data (the floor every decision departs from only on evidence)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from coach.pilot import plan as P
from coach.config import DATASETS, Config, make_config
from coach.data import Data
from coach.data.resolve import NEEDS_PATH, source_of_path
from coach.errors import UserError
from coach.nn.maker import BUILDER, Maker

PLAIN_LR = 3e-3
LABEL_SMOOTHING = 0.1  # the floor's, Szegedy et al. 2016's value


def data_section(data: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The config's data section for a dataset name, an .npz or a folder, plus data.* options
    (which source reads a path, the data layer decides: coach.data.resolve.source_of_path)."""
    options = dict(options or {})
    by_name = [n for n in DATASETS.names() if n not in NEEDS_PATH and n != "arrays"]
    if data in by_name:
        return {"name": data, **options}
    p = Path(data)
    if not p.exists() or (p.is_file() and p.suffix != ".npz"):
        raise UserError(f"--data {data}: not a known dataset ({', '.join(by_name)}), an .npz file or a folder "
                        "of images")
    name = source_of_path(p)
    size = {"image_size": folder_image_size(p)} if name == "image-folder" else {}
    return {"name": name, "path": str(p), **size, **options}


def folder_image_size(root: Path, default: int = 32, sample: int = 64) -> list[int]:
    """Small images keep their own size (upscaling only costs time); larger ones are resized
    to default x default. The median of a sample decides."""
    from PIL import Image, UnidentifiedImageError

    heights, widths = [], []
    for f in sorted(x for x in root.rglob("*") if x.is_file())[:sample]:
        try:
            with Image.open(f) as im:
                widths.append(im.width)
                heights.append(im.height)
        except (UnidentifiedImageError, OSError):
            continue  # the loader names unreadable files
    if not heights:
        return [default, default]
    mid = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
    return [min(mid(heights), default), min(mid(widths), default)]


def plain_recipe(data_cfg: dict[str, Any], data: Data, seed: int = 0, maker: Maker = BUILDER,
                 augment: bool = True) -> tuple[Config, str]:
    """The floor: the lectures' recipe for this shape of data (batch norm, augmentation), one-cycle
    to be sized to the time.
    maker: the user's module or factory (coach.nn.own) takes the place of coach's model; a factory
    that takes a width gets the plain recipe's width to start from. augment=False: the barest recipe
    (no augmentation), for the table of what each decision buys."""
    kind, shape = data.kind, data.input_shape
    if kind == "vector":
        model, why = {"name": "mlp", "width": 256, "depth": 2}, "flat vectors: an MLP"
    elif kind == "signal":
        model, why = {"name": "convnet", "width": 32, "depth": 2}, "1-D signals: a 1-D convnet"
    else:
        model, why = {"name": "convnet", "width": 32, "depth": 2 if min(shape[1:]) <= 32 else 3}, \
            f"{shape[0]}x{shape[1]}x{shape[2]} images: a VGG-style 2-D convnet"
    # the lectures' recipe, not the barest: "batch normalization and data augmentation almost always
    # a good idea" (seed 000): the kind's first label-preserving transform (small translations for
    # images, shifts for signals); mirrors only on evidence (shoes and digits have a side)
    augment = next((v for k, v in P.augmentations(kind, shape).items() if k != "none"), {}) if augment else {}
    named = " and ".join(f"{k.split('.')[-1]}={v}" for k, v in augment.items())
    aug_why = (f"{named} augmentation (the lectures' default; the decisions may show the data are better "
               "without it)" if augment else "no augmentation")
    init = "Kaiming init with batch norm"
    if maker.name is not None:
        why = f"your {maker.name}" + (" (built at each width the budget affords)" if "model.width" in maker.searchable
                                     else "")
        # a factory that takes a width starts at the plain one; any other module keeps its own size
        model = {"name": "module", **({"width": model["width"]} if "model.width" in maker.searchable else {})}
        init = "your module's own initialization"
    cfg = make_config({"seed": seed, "data": {**data_cfg, "preprocess": "standardize"},
                       "model": {**model, "activation": "relu", "init": "kaiming", "norm": "batch"},
                       "regularize": {"label_smoothing": LABEL_SMOOTHING},
                       "optim": {"name": "adamw", "lr": PLAIN_LR, "weight_decay": 1e-4},
                       "schedule": {"name": "onecycle"}, "augment": {k.split(".")[1]: v for k, v in augment.items()},
                       "train": {"epochs": 10, "batch_size": 128, "progress": False, "monitor_every": 0}})
    return cfg, (f"{why}; inputs standardized per channel, {init}, AdamW at {PLAIN_LR:g} with a "
                 f"one-cycle schedule sized to the time; {aug_why}; label smoothing {LABEL_SMOOTHING:g} (a known-good "
                 "default for classifiers, Szegedy et al. 2016); Polyak averaging (EMA) of the weights when "
                 "the final training gets 10 epochs or more. This recipe is the floor: the autopilot departs from it "
                 "only on validation evidence")


def floor_lr(probe: list[dict[str, Any]], lr: float = PLAIN_LR) -> tuple[float, str]:
    """The plain recipe's AdamW LR (3e-3, scaled with a larger batch), unless the lectures' probe
    (a fresh model, ~100 steps at each of 1e-1, 1e-2, 1e-3, 1e-4 and 3e-3) shows 3e-3 does not
    make the loss drop, or blows up, while another LR does: then the probe LR whose loss fell
    furthest."""
    mine = next((r for r in probe if r["lr"] == PLAIN_LR), None)
    working = [r for r in probe if r["drops"] and not r["diverged"]]
    if mine is None or not working or (mine["drops"] and not mine["diverged"]):
        return lr, (f"the lectures' LR probe saw AdamW's {PLAIN_LR:g} make the loss drop: the plain recipe keeps "
                    f"{lr:.3g}" if mine is not None and mine["drops"] else f"the plain recipe keeps AdamW's {lr:.3g}")
    best = min(working, key=lambda r: r["last"] / r["first"])
    what = "blew up" if mine["diverged"] else "did not make the loss drop"
    return best["lr"], (f"in the lectures' LR probe {PLAIN_LR:g} {what}; {best['lr']:g} made it fall furthest "
                        f"({best['first']:.3g} -> {best['last']:.3g}): the plain recipe trains at {best['lr']:g}")
