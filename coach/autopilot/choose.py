"""What helps after training, decided on the validation split (CS231n lecture 7: Polyak
averaging, test-time augmentation, ensembles), and the one look at the test split.

Candidates: the best-on-validation weights; their EMA (Polyak) average, batch norm
re-estimated; test-time views the model was trained on (mirrors only after flip training,
crops only after crop training, shifts only after shift training); an ensemble with the
search's runner-up (already trained: it costs only its predictions). Each costs forward
passes, which the cost model prices; candidates are tried cheapest first while they fit
the seconds kept for this stage.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from coach.config import Config
from coach.data import Data
from coach.evaluate import ensemble, predict_proba, recompute_bn, scores
from coach.evaluate.tta import trained_views, views
from coach.fmt import sig
from coach.train import Run
from coach.train.run import save_predictions, save_safetensors

BN_EXAMPLES = 5_000  # training examples the EMA weights' batch-norm statistics are re-estimated on


def tta_pad(cfg: Any) -> int:
    return max(cfg.augment.crop_padding, 2)


def load_weights(run_dir: Path, which: str, data: Data, template: torch.nn.Module | None = None) -> torch.nn.Module:
    """template: a fresh instance of the user's own module (coach.nn.own), so EMA weights get
    their batch norm re-estimated (an exported program is inference only)."""
    model = Run.open(run_dir).load_model(which, model=template)
    return recompute_bn(model, data.train.x[:BN_EXAMPLES]) if which == "ema" else model


def view_count(mode: str, x: torch.Tensor) -> int:
    return len(views(x[:1], mode))


def tta_modes(cfg: Config, kind: str) -> list[str]:
    a = cfg.augment
    return trained_views(kind, a.hflip, a.crop_padding, a.resized_crop, a.shift)


def planned_passes(cfg: Config, data: Data, ema: bool, runner_up: bool) -> tuple[float, int]:
    """What `choose` and the test cost at most, in examples forwarded: (validation and
    batch-norm passes, test passes), for the reserve the autopilot keeps for them."""
    x = data.val.x if len(data.val) else data.train.x
    views_ = [view_count(m, x) for m in tta_modes(cfg, data.kind)]
    val = (1 + ema + runner_up + sum(views_)) * len(data.val) + ema * min(len(data.train), BN_EXAMPLES)
    return val, (max([1, *views_]) + runner_up) * len(data.test)


def choose(final_dir: Path, data: Data, eval_example: float, seconds: float,
           runner_up: Path | None = None, predictions_to: Path | None = None,
           template: torch.nn.Module | None = None) -> dict[str, Any]:
    """Try the candidates on validation, cheapest first, while they fit `seconds` (priced at
    eval_example seconds per example and view); returns the table and the choice.
    predictions_to: where the chosen candidate's validation predictions go (for the page)."""
    cfg = Run.open(final_dir).config
    n_val, pad = len(data.val), tta_pad(cfg)
    price = lambda views_: views_ * n_val * eval_example  # noqa: E731
    spent = price(1)
    rows: list[dict[str, Any]] = []
    best = load_weights(final_dir, "best", data, template)
    p_best = predict_proba(best, data.val.x, pad=pad)
    rows.append({"name": "best weights", "acc": scores(p_best, data.val.y)["acc"], "views": 1, "probs": p_best,
                 "choice": {"weights": "best", "tta": "none", "ensemble": []}})
    models, probs = {"best": best}, {"best": p_best}
    if (final_dir / "weights" / "ema.safetensors").exists() and spent + price(1) + \
            min(len(data.train), BN_EXAMPLES) * eval_example <= seconds:
        spent += price(1) + min(len(data.train), BN_EXAMPLES) * eval_example
        models["ema"] = load_weights(final_dir, "ema", data, template)
        probs["ema"] = predict_proba(models["ema"], data.val.x, pad=pad)
        rows.append({"name": "EMA weights", "acc": scores(probs["ema"], data.val.y)["acc"], "views": 1,
                     "probs": probs["ema"], "choice": {"weights": "ema", "tta": "none", "ensemble": []}})
    base = max(rows, key=lambda r: r["acc"])
    which = base["choice"]["weights"]
    modes = tta_modes(cfg, data.kind)
    for mode in sorted(modes, key=lambda m: view_count(m, data.val.x)):
        k = view_count(mode, data.val.x)
        if spent + price(k) > seconds:
            break
        spent += price(k)
        p = predict_proba(models[which], data.val.x, mode, pad=pad)
        rows.append({"name": f"{base['name']} + TTA {mode}", "acc": scores(p, data.val.y)["acc"], "views": k,
                     "probs": p, "choice": {"weights": which, "tta": mode, "ensemble": []}})
    if runner_up is not None and (runner_up / "weights" / "final.safetensors").exists() and \
            spent + price(1) <= seconds:
        spent += price(1)
        other = predict_proba(Run.open(runner_up).load_model("final"), data.val.x, pad=pad)
        both = ensemble([probs[which], other])
        rows.append({"name": f"{base['name']} + the search's runner-up (ensemble)",
                     "acc": scores(both, data.val.y)["acc"], "views": 2, "probs": both,
                     "choice": {"weights": which, "tta": "none", "ensemble": [str(runner_up)]}})
    pick = max(rows, key=lambda r: r["acc"])  # ties: the first, i.e. the cheapest
    # the chosen weights, batch norm re-estimated for EMA, so `coach predict` needs no data
    save_safetensors(models[pick["choice"]["weights"]].state_dict(), final_dir / "weights" / "chosen.safetensors")
    if predictions_to is not None:
        conf, pred = pick["probs"].max(1)
        save_predictions(predictions_to, pred, conf, data.val.y, data.val.x)
    for r in rows:  # what each alternative cost: forward passes over the validation split, priced
        r["seconds"] = price(r["views"])
    return {"candidates": [{k: v for k, v in r.items() if k not in ("choice", "probs")} for r in rows],
            "choice": pick["choice"],
            "pick": pick["name"],
            "decision": "on the validation split: " + ", ".join(f"{r['name']} {sig(r['acc'])}" for r in rows)
                        + f" -> {pick['name']}"}


def predict_with_choice(final_dir: Path, choice: dict[str, Any], x: torch.Tensor) -> Any:
    """Probabilities of the chosen model (weights, test-time views, ensemble) on inputs x."""
    run = Run.open(final_dir)
    probs = [predict_proba(run.load_model("chosen"), x, choice.get("tta", "none"), pad=tta_pad(run.config))]
    for d in choice.get("ensemble", []):
        probs.append(predict_proba(Run.open(d).load_model("final"), x))
    return ensemble(probs)


def test_once(final_dir: Path, choice: dict[str, Any], data: Data) -> dict[str, float]:
    """The one look at the test split."""
    return scores(predict_with_choice(final_dir, choice, data.test.x), data.test.y)
