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

import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from coach.config import Config, load_config
from coach.data.download import atomic_write_bytes
from coach.data.preprocess import Preprocessor
from coach.errors import UserError
from coach.nn.models import CoachModel, build_model


def default_run_dir(cfg: Config, root: str | Path = "runs") -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{stamp}-{cfg.data.name}-{cfg.model.name}"
    path, i = base, 1
    while path.exists():
        path, i = Path(f"{base}-{i}"), i + 1
    return path


def write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=float) + "\n").encode())


def save_safetensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)


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


def model_spec(model: CoachModel, kind: str, classes: list[str], input_shape: tuple[int, ...]) -> dict[str, Any]:
    pre = model.preprocess
    return {"kind": kind, "classes": classes, "input_shape": list(input_shape), "num_classes": model.num_classes,
            "preprocess": {"mode": getattr(pre, "mode", "none"),
                           "components": int(pre.proj.shape[1]) if getattr(pre, "mode", "") == "pca" else None}}


def versions() -> dict[str, str]:
    from coach import __version__
    return {"coach": __version__, "torch": torch.__version__, "python": platform.python_version()}


@dataclass
class Run:
    """A finished (or interrupted) run, read from its directory."""

    dir: Path
    summary: dict[str, Any] = field(default_factory=dict)
    model: CoachModel | None = None  # set when the run was just trained in this process
    data: Any = None

    @classmethod
    def open(cls, run_dir: str | Path) -> "Run":
        d = Path(run_dir)
        if not (d / "config.yaml").is_file():
            raise UserError(f"{d}: not a coach run directory (no config.yaml)")
        summary = json.loads((d / "summary.json").read_text()) if (d / "summary.json").exists() else {}
        return cls(d, summary)

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

    def load_model(self, which: str = "best") -> CoachModel:
        """Rebuild the model from config + model.json and load weights/{which}.safetensors."""
        weights = self.dir / "weights" / f"{which}.safetensors"
        if not weights.exists():
            raise UserError(f"{weights}: no such weights; available: "
                            f"{sorted(p.stem for p in (self.dir / 'weights').glob('*.safetensors'))}")
        return rebuild_model(self.config, self.spec, read_safetensors(weights))


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
    return model.eval()
