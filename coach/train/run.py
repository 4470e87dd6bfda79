"""The run directory: everything a run leaves behind, and how to read it back.

    RUN_DIR/
      config.yaml              the resolved config (every default written out)
      model.json               input shape, classes, preprocessing: enough to rebuild the model
      metrics.jsonl            one JSON record per logged step and per validation
      checkpoints/last.pt      full training state (resume); best.pt: best on validation
      checkpoints/snapshots/   snapshot-ensemble weights (train.snapshots)
      weights/final.safetensors, weights/best.safetensors (and ema.safetensors)
      preprocess.safetensors   the fitted preprocessing statistics
      summary.json             final and best metrics, steps, time, versions, device, seed
      val-predictions.npz      the last validation's predictions: per-class accuracy, the confusion
                               matrix and the most confident mistakes (their inputs too) for reports
"""
from __future__ import annotations

import copy
import json
import os
import platform
import shutil
import tempfile
import time
import warnings
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save as save_bytes
from torch import nn

from coach.config import Config, load_config
from coach.atomic import atomic_write_bytes
from coach.data import resolved
from coach.data.preprocess import Preprocessor, input_stats, scale_mismatch
from coach.errors import UserError
from coach.folders import kind_of
from coach.version import __version__
from coach.nn.models import CoachModel, build_model
from coach.nn.own import OwnModel, load_exported
from coach.train.predict import Choice, Predictor


def default_run_dir(cfg: Config, root: str | Path = "runs") -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{stamp}-{resolved(cfg.data).name}-{cfg.model.name}"
    path, i = base, 1
    while path.exists():
        path, i = Path(f"{base}-{i}"), i + 1
    return path


def write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=float) + "\n").encode())


def save_safetensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    atomic_write_bytes(path, save_bytes({k: v.detach().cpu().contiguous() for k, v in tensors.items()},
                                        metadata=metadata))


MISTAKES = 24  # the most confident mistakes a report shows


def save_predictions(path: Path, pred: torch.Tensor, conf: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> None:
    """Validation predictions for the reports: class and confidence per example, and the inputs of
    the most confident mistakes (a few, not the split). Written whole or not at all."""
    import io

    import numpy as np
    pred, conf, y = pred.cpu(), conf.cpu().float(), y.cpu()
    wrong = (pred != y).nonzero().flatten()
    worst = wrong[conf[wrong].argsort(descending=True)[:MISTAKES]]
    buf = io.BytesIO()
    np.savez(buf, pred=pred.numpy().astype(np.int32), conf=conf.numpy(), y=y.numpy().astype(np.int32),
             mistakes=worst.numpy().astype(np.int64), mistake_x=x[worst].detach().cpu().float().numpy())
    atomic_write_bytes(path, buf.getvalue())


def load_predictions(path: Path) -> dict[str, Any] | None:
    import numpy as np
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as d:
        return {k: d[k] for k in d.files}


def model_spec(model: CoachModel | OwnModel, kind: str, classes: list[str], input_shape: tuple[int, ...],
               module: str | None = None, inputs: torch.Tensor | None = None) -> dict[str, Any]:
    """module: the name of the user's own module or factory (coach.nn.own), None for coach's models.
    inputs: raw training inputs, whose range and spread prediction compares its inputs with."""
    pre = model.preprocess
    spec = {"kind": kind, "classes": classes, "input_shape": list(input_shape), "num_classes": model.num_classes,
            "preprocess": {"mode": getattr(pre, "mode", "none"),
                           "components": int(pre.proj.shape[1]) if getattr(pre, "mode", "") == "pca" else None}}
    if inputs is not None:
        spec["input_stats"] = input_stats(inputs)
    return spec | ({"module": module} if module else {})


def warn_scale(spec: dict[str, Any], x: torch.Tensor) -> None:
    """Say it (stderr, and Python's warnings) when inputs to predict are on another scale than at training."""
    message = scale_mismatch(spec.get("input_stats"), x)
    if message:
        warnings.warn(message, UserWarning, stacklevel=3)


def versions() -> dict[str, str]:
    return {"coach": __version__, "torch": torch.__version__, "python": platform.python_version()}


class TempDir:
    """A temporary directory removed when the last object holding this goes (a run or session
    trained on data in memory with no directory asked for: nothing stays on disk)."""

    def __init__(self, prefix: str):
        self.path = Path(tempfile.mkdtemp(prefix=prefix))
        weakref.finalize(self, shutil.rmtree, str(self.path), True)


def copy_folder(src: Path, path: str | Path) -> Path:
    """Copy the folder src to path, which must not exist (a run, session or sweep kept by save())."""
    dest = Path(path)
    if dest.exists():
        raise UserError(f"{dest}: already exists; give a new directory to save it in")
    shutil.copytree(src, dest)
    return dest


def as_inputs(x: Any, shape: tuple[int, ...]) -> torch.Tensor:
    """Raw inputs (arrays or a tensor) as a float tensor of N x shape; channel-less images or
    signals get their channel, as the data layer accepts them. Another shape is a clear error."""
    import numpy as np
    xt = (x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x, dtype=np.float32))).float()
    if tuple(xt.shape[1:]) != shape and xt.ndim == len(shape) and shape[0] == 1 and tuple(xt.shape[1:]) == shape[1:]:
        xt = xt[:, None]
    if tuple(xt.shape[1:]) != shape:
        raise UserError(f"predict: inputs of shape {tuple(xt.shape[1:])}; this model takes {shape}")
    return xt


class Kept(dict):
    """A result as a plain dict, whose files live in the folder `root`; keep: the TempDir that
    folder is, when no folder was asked for (it goes when the result goes; save(path) keeps a copy)."""

    def __init__(self, result: dict[str, Any], root: str | Path, keep: TempDir | None = None):
        super().__init__(result)
        self.root, self.keep = Path(root), keep

    def save(self, path: str | Path) -> "Kept":
        """Copy the folder to path (which must not exist); the result of the copy, its paths there."""
        dest = copy_folder(self.root, path)
        old = str(self.root)

        def moved(v: Any) -> Any:
            if isinstance(v, str) and (v == old or v.startswith(old + os.sep)):
                return str(dest) + v[len(old):]
            if isinstance(v, dict):
                return {k: moved(x) for k, x in v.items()}
            return [moved(x) for x in v] if isinstance(v, list) else v

        return type(self)(moved(dict(self)), dest)


@dataclass
class Run:
    """A finished (or interrupted) run, read from its directory. keep: the TempDir the run lives
    in when no directory was asked for (removed when the Run goes; run.save(path) keeps a copy)."""

    dir: Path
    summary: dict[str, Any] = field(default_factory=dict)
    model: nn.Module | None = None  # set when the run was just trained in this process
    data: Any = None
    keep: TempDir | None = None

    @classmethod
    def open(cls, run_dir: str | Path) -> "Run":
        d = Path(run_dir)
        if not (d / "config.yaml").is_file():
            raise UserError(f"{d}: not a coach run directory (no config.yaml)")
        summary = json.loads((d / "summary.json").read_text()) if (d / "summary.json").exists() else {}
        return cls(d, summary)

    def save(self, path: str | Path) -> "Run":
        """Copy the run directory to path (which must not exist); the Run of the copy."""
        return Run(copy_folder(self.dir, path), self.summary, self.model, self.data)

    @property
    def config(self) -> Config:
        return load_config(self.dir / "config.yaml")

    @property
    def spec(self) -> dict[str, Any]:
        path = self.dir / "model.json"
        if not path.exists():
            raise UserError(f"{self.dir}: no model.json; the run did not get far enough to save a model")
        return json.loads(path.read_text())

    def metrics(self) -> list[dict[str, Any]]:
        path = self.dir / "metrics.jsonl"
        return [json.loads(ln) for ln in path.read_text().splitlines() if ln] if path.exists() else []

    @property
    def history(self) -> list[dict[str, Any]]:
        """One plain dict per evaluation (epoch, step, train/val loss and accuracy, lr, time...),
        in order: what Keras' History.history holds, one row per evaluation."""
        return [{k: v for k, v in m.items() if k != "type"} for m in self.metrics() if m.get("type") == "eval"]

    def history_frame(self) -> Any:
        """run.history as a pandas DataFrame (needs pandas)."""
        try:
            import pandas as pd
        except ImportError:
            raise UserError("run.history_frame() needs pandas: pip install pandas (run.history is the same rows "
                            "as a list of dicts)") from None
        return pd.DataFrame(self.history)

    def load_model(self, which: str = "best", model: nn.Module | None = None) -> nn.Module:
        """The model with weights/{which}.safetensors, in eval mode. coach's models are rebuilt from
        config + model.json; your own module (coach.nn.own) is the one trained in this process, else
        `model` (a fresh instance of it), else its torch.export program (inference only)."""
        weights = self.dir / "weights" / f"{which}.safetensors"
        if not weights.exists():
            raise UserError(f"{weights}: no such weights; available: "
                            f"{sorted(p.stem for p in (self.dir / 'weights').glob('*.safetensors'))}")
        return self.rebuild(read_safetensors(weights), model)

    def rebuild(self, state: dict[str, torch.Tensor], model: nn.Module | None = None) -> nn.Module:
        """This run's model with the weights in state (a state dict of the trained model)."""
        spec = self.spec
        if "module" not in spec:
            return rebuild_model(self.config, spec, state)
        if model is not None:
            shape = tuple(spec["input_shape"])
            pre = Preprocessor(spec["preprocess"]["mode"], shape, spec["preprocess"]["components"])
            own = OwnModel(copy.deepcopy(model), spec["num_classes"], pre)
        elif self.model is not None:
            own = copy.deepcopy(self.model).cpu()
        else:
            own = load_exported(self.dir / "model.pt2", spec["num_classes"])
        load_checked(own, state)
        return own.eval()

    def predict(self, x: Any, weights: str = "best") -> Any:
        """Class probabilities (a numpy array, N x C) for raw inputs x (arrays or a tensor, shaped as
        the training inputs), with the run's preprocessing, on the CPU (coach.train.predict)."""
        xt = as_inputs(x, tuple(self.spec["input_shape"]))
        warn_scale(self.spec, xt)
        return Predictor(self, Choice(weights)).probabilities(xt).numpy()


def predictor(path: str | Path | Run, weights: str | None = None) -> tuple[Predictor, Run]:
    """What a coach folder predicts with, and its run: a run's `weights` (default best); an
    autopilot session's choice (weights, test-time views, ensemble) as its test accuracy was
    measured, unless `weights` names others; a sweep's best trial."""
    run = path if isinstance(path, Run) else None
    choice = Choice(weights or "best")
    if run is None:
        kind = kind_of(path)
        if kind == "session":
            result = json.loads((Path(path) / "result.json").read_text()) if (Path(path) / "result.json").exists() \
                else {}
            if not result.get("model_dir"):
                raise UserError(f"{path}: this autopilot session has not trained a model "
                                f"({result.get('stopped') or 'it is not finished'})")
            run = Run.open(result["model_dir"])
            choice = Choice(weights) if weights else Choice("chosen", result["choice"].get("tta", "none"),
                                                            list(result["choice"].get("ensemble", [])))
        elif kind == "sweep":
            best = json.loads((Path(path) / "sweep.json").read_text()).get("best")
            if not best:
                raise UserError(f"{path}: this sweep has no finished trial to predict with")
            run = Run.open(best["run_dir"])
        elif kind == "run":
            run = Run.open(path)
        else:
            raise UserError(f"{path}: a check result holds no model to predict with")
    return Predictor(run, choice, Run.open), run


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors; a truncated or foreign file is one line naming it."""
    try:
        return load_file(str(path))
    except Exception as e:  # SafetensorError, OSError, a header that is not JSON...
        raise UserError(f"{path}: not a readable safetensors file ({e.__class__.__name__}: "
                        f"{str(e).splitlines()[0][:120]}); it is truncated or was not written by coach") from None


def rebuild_model(cfg: Config, spec: dict[str, Any], state: dict[str, torch.Tensor]) -> CoachModel:
    shape = tuple(spec["input_shape"])
    pre = Preprocessor(spec["preprocess"]["mode"], shape, spec["preprocess"]["components"])
    model = build_model(cfg.model.model_copy(update={"init": "default"}), shape, spec["num_classes"],
                        cfg.regularize, pre)
    load_checked(model, state)
    return model.eval()


def load_checked(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load state into model; weights that do not fit are one clear error, not a torch traceback."""
    mine = model.state_dict()
    wrong = [f"{k} {tuple(v.shape)} (the model's: {tuple(mine[k].shape)})" for k, v in state.items()
             if k in mine and mine[k].shape != v.shape]
    missing, extra = sorted(set(mine) - set(state)), sorted(set(state) - set(mine))
    if wrong or missing or extra:
        raise UserError("the weights do not fit the model of this run's config.yaml and model.json: "
                        + "; ".join(filter(None, [f"wrong shapes: {', '.join(wrong[:3])}" if wrong else "",
                                                  f"missing: {', '.join(missing[:3])}" if missing else "",
                                                  f"unexpected: {', '.join(extra[:3])}" if extra else ""])))
    model.load_state_dict(state)
