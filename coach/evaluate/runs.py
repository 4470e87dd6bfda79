"""`coach evaluate RUN_DIR...`: each model alone, then what each technique adds.

For every run: its best-on-validation weights; with its EMA weights (if trained with
train.ema); its snapshot ensemble (if trained with train.snapshots); each with and
without the chosen TTA. With --ensemble, the average of all runs' probabilities. The
test split is read only when asked for (`split="test"`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from coach.data import Data, load_data
from coach.errors import UserError
from coach.train.predict import ensemble, has_batchnorm, predict_proba, recompute_bn, scores
from coach.data.views import check_mode
from coach.train import checkpoint as ckpt
from coach.train.run import Run, read_safetensors, write_json


def _data_key(run: Run) -> tuple[Any, ...]:
    d = run.config.data
    spec = run.spec
    return (d.name, d.path, tuple(d.classes or ()), spec["num_classes"], tuple(spec["input_shape"]))


def check_compatible(runs: list[Run]) -> None:
    keys = {str(r.dir): _data_key(r) for r in runs}
    if len(set(keys.values())) > 1:
        lines = [f"{d}: data {k[0]} {k[1] or ''} classes {k[3]} input {list(k[4])}" for d, k in keys.items()]
        raise UserError("these runs were trained on different data or class counts and cannot be ensembled:\n  "
                        + "\n  ".join(lines))


def snapshot_models(run: Run) -> list[torch.nn.Module]:
    folder = run.dir / "checkpoints" / "snapshots"
    paths = sorted(folder.glob("snapshot-*.pt"), key=lambda p: int(p.stem.split("-")[1])) if folder.exists() else []
    return [run.rebuild(ckpt.load(p)["model"]) for p in paths]


def evaluate_runs(run_dirs: list[str | Path], tta: str = "none", use_ensemble: bool = False, split: str = "val",
                  data: Data | None = None, device: str = "cpu") -> dict[str, Any]:
    if split not in ("val", "test"):
        raise UserError(f"--split: {split!r}; allowed: val, test")
    runs = [Run.open(d) for d in run_dirs]
    if not runs:
        raise UserError("give at least one run directory")
    check_compatible(runs)
    check_mode(tta, runs[0].spec["kind"])
    data = data if data is not None else load_data(runs[0].config.data)
    target = data.val if split == "val" else data.test
    pad = max(runs[0].config.augment.crop_padding, 2)
    rows: list[dict[str, Any]] = []
    members: list[torch.Tensor] = []

    def add(name: str, model: torch.nn.Module | None, probs: torch.Tensor | None = None) -> torch.Tensor:
        p = probs if probs is not None else predict_proba(model, target.x, "none", pad, device=device)
        rows.append({"name": name, "tta": "none", **scores(p, target.y)})
        if tta != "none" and model is not None:
            rows.append({"name": name, "tta": tta, **scores(predict_proba(model, target.x, tta, pad, device=device),
                                                           target.y)})
        return p

    for run in runs:
        tag = run.dir.name
        members.append(add(f"{tag} (best weights)", run.load_model("best")))
        ema_path = run.dir / "weights" / "ema.safetensors"
        if ema_path.exists():
            ema = run.rebuild(read_safetensors(ema_path))
            recomputed = has_batchnorm(ema)  # an exported program (coach.nn.own) has no modules to recompute
            add(f"{tag} (EMA weights{', BN recomputed' if recomputed else ''})", recompute_bn(ema, data.train.x))
        snaps = snapshot_models(run)
        if len(snaps) > 1:
            probs = ensemble(predict_proba(m, target.x, "none", pad, device=device) for m in snaps)
            add(f"{tag} (snapshot ensemble of {len(snaps)})", None, probs)
    if use_ensemble and len(members) > 1:
        add(f"ensemble of {len(members)} runs", None, ensemble(members))
    base = rows[0]["acc"]
    for r in rows:
        r["gain"] = r["acc"] - base
    result = {"split": split, "tta": tta, "runs": [str(r.dir) for r in runs], "rows": rows}
    write_json(runs[0].dir / f"evaluation-{split}.json", result)
    return result


def format_table(result: dict[str, Any]) -> str:
    w = max(len(r["name"]) for r in result["rows"]) + 2
    lines = [f"{'model':<{w}} {'tta':<10} {'acc':>7} {'loss':>7} {'vs first':>9}   (split: {result['split']})"]
    for r in result["rows"]:
        lines.append(f"{r['name']:<{w}} {r['tta']:<10} {r['acc']:>7.4f} {r['loss']:>7.4f} {r['gain']:>+9.4f}")
    return "\n".join(lines)
