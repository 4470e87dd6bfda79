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
from coach.data.views import trained_views, views
from coach.fmt import sig
from coach.train import Run
from coach.train.predict import Choice, Predictor, ensemble, predict_proba, recompute_bn, scores, view_pad
from coach.train.run import save_predictions, save_safetensors

BN_EXAMPLES = 5_000  # training examples the EMA weights' batch-norm statistics are re-estimated on


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


def planned_seconds(cfg: Config, data: Data, per_example: float, seconds: float, ema: bool = True, others: int = 0,
                    views: bool = True) -> float:
    """What `choose` and the test will spend, the candidates tried in choose's order while they
    fit `seconds` (Shortlist.affords), each priced as if it were chosen: the reserve the
    autopilot keeps for them. Where the seconds cannot hold a candidate it is left out of the
    plan rather than half paid for: with the most views' test kept back whether or not they
    were tried, a 3-minute session's choose could not afford the EMA weights, and the test, with
    one view, left 12 s unspent. others: ensemble members besides the final model (its other
    members, the decisions' runner-up); views: whether test-time views will be tried."""
    short = Shortlist(data, per_example, seconds)
    short.charge(1)  # the best weights, always
    x = data.val.x if len(data.val) else data.train.x
    if ema and short.affords(1, short.bn):
        short.charge(1, short.bn)
    most = 1
    for k in sorted(view_count(m, x) for m in tta_modes(cfg, data.kind)) if views else []:
        if not short.affords(k, test_views=k):
            break
        short.charge(k, test_views=k)
        most = k
    if others and short.affords(most * others, test_views=most * (1 + others)):
        short.charge(most * others, test_views=most * (1 + others))
    return short.total


def better(row: dict[str, Any]) -> tuple[float, float]:
    """Validation accuracy, a tie broken by validation loss (a saturated accuracy cannot tell
    an early checkpoint from a converged one; the loss can)."""
    return row["acc"], -row["loss"]


class Shortlist:
    """The candidates tried so far, each with its validation scores, and the seconds they cost:
    forward passes priced at per_example seconds an example, as prediction runs them
    (Cost.predict). Always paid for: the chosen weights' training accuracy (the gap) and the
    test through one view. A candidate costs its passes over the validation split, and the test
    it would make longer if chosen (k views: k passes over the test split), so it is tried only
    when both fit."""

    def __init__(self, data: Data, per_example: float, seconds: float):
        self.data, self.per_example, self.seconds = data, per_example, seconds
        self.rows: list[dict[str, Any]] = []
        self.bn = min(len(data.train), BN_EXAMPLES) * per_example  # the EMA weights' batch norm, re-estimated
        self.spent = min(len(data.val), len(data.train)) * per_example  # the gap's training accuracy
        self.test_views = 1  # the test's passes for the costliest candidate tried

    def price(self, views_: int, extra: float = 0.0, test_views: int = 1) -> float:
        """What trying a candidate adds to `total`."""
        longer_test = max(test_views - self.test_views, 0) * len(self.data.test)
        return (views_ * len(self.data.val) + longer_test) * self.per_example + extra

    @property
    def total(self) -> float:
        """The seconds this shortlist and the test of any of its candidates take."""
        return self.spent + self.test_views * len(self.data.test) * self.per_example

    def affords(self, views_: int, extra: float = 0.0, test_views: int = 1) -> bool:
        return self.total + self.price(views_, extra, test_views) <= self.seconds

    def charge(self, views_: int, extra: float = 0.0, test_views: int = 1) -> float:
        price = self.price(views_, extra, test_views)
        self.spent += views_ * len(self.data.val) * self.per_example + extra
        self.test_views = max(self.test_views, test_views)
        return price

    def add(self, name: str, probs: torch.Tensor, views_: int, choice: dict[str, Any], extra: float = 0.0,
            test_views: int | None = None) -> None:
        price = self.charge(views_, extra, views_ if test_views is None else test_views)
        self.rows.append({"name": name, **scores(probs, self.data.val.y), "views": views_, "probs": probs,
                          "choice": choice, "seconds": price})

    def best(self) -> dict[str, Any]:
        return max(self.rows, key=better)  # full ties: the first, i.e. the cheapest


def choose(final_dir: Path, data: Data, per_example: float, seconds: float,
           others: list[tuple[str, list[Path]]] | None = None, predictions_to: Path | None = None,
           template: torch.nn.Module | None = None, views: bool = True) -> dict[str, Any]:
    """Try the candidates on validation, cheapest first, while they and the test each would need
    fit `seconds` (Shortlist): the best or
    EMA weights, then the test-time views the model was trained on, then ensembles with the
    runs in `others` (label, run directories: the final's other members, the decisions'
    runner-up; each seen through the same views). Returns the table and the choice. views=False:
    no test-time views among the candidates. predictions_to: where the chosen candidate's
    validation predictions go (for the page)."""
    cfg = Run.open(final_dir).config
    pad = view_pad(cfg)
    short = Shortlist(data, per_example, seconds)
    models = {"best": load_weights(final_dir, "best", data, template)}
    short.add("best weights", predict_proba(models["best"], data.val.x, pad=pad), 1,
              {"weights": "best", "tta": "none", "ensemble": []})
    if (final_dir / "weights" / "ema.safetensors").exists() and short.affords(1, short.bn):
        models["ema"] = load_weights(final_dir, "ema", data, template)
        short.add("EMA weights", predict_proba(models["ema"], data.val.x, pad=pad), 1,
                  {"weights": "ema", "tta": "none", "ensemble": []}, short.bn)
    base = short.best()
    which = base["choice"]["weights"]
    for mode in sorted(tta_modes(cfg, data.kind) if views else [], key=lambda m: view_count(m, data.val.x)):
        k = view_count(mode, data.val.x)
        if not short.affords(k, test_views=k):
            break
        short.add(f"{base['name']} + TTA {mode}", predict_proba(models[which], data.val.x, mode, pad=pad), k,
                  {"weights": which, "tta": mode, "ensemble": []})
    lead = short.best()
    for label, dirs in others or []:
        dirs = [d for d in dirs if (d / "weights" / "final.safetensors").exists()]
        k, test_views = lead["views"] * len(dirs), lead["views"] * (1 + len(dirs))
        if not dirs or not short.affords(k, test_views=test_views):
            continue
        members = [predict_proba(Run.open(d).load_model("final"), data.val.x, lead["choice"]["tta"], pad=pad)
                   for d in dirs]
        short.add(f"{lead['name']} + {label} (ensemble)", ensemble([lead["probs"], *members]), k,
                  {**lead["choice"], "ensemble": [str(d) for d in dirs]}, test_views=test_views)
    pick = short.best()
    # the chosen weights, batch norm re-estimated for EMA, so `coach predict` needs no data
    save_safetensors(models[pick["choice"]["weights"]].state_dict(), final_dir / "weights" / "chosen.safetensors")
    if predictions_to is not None:
        conf, pred = pick["probs"].max(1)
        save_predictions(predictions_to, pred, conf, data.val.y, data.val.x)
    return {"candidates": [{k: v for k, v in r.items() if k not in ("choice", "probs")} for r in short.rows],
            "choice": pick["choice"], "pick": pick["name"],
            **gap(models[pick["choice"]["weights"]], weights_row(short.rows, pick), data, pad),
            "decision": "on the validation split: " + ", ".join(f"{r['name']} {sig(r['acc'])}" for r in short.rows)
                        + f" -> {pick['name']}" + tie_note(short.rows, pick)
                        + (early_note(Run.open(final_dir).summary) if pick["choice"]["weights"] == "best" else "")}


def weights_row(rows: list[dict[str, Any]], pick: dict[str, Any]) -> dict[str, Any]:
    """The candidate of the chosen weights alone: one view, no ensemble."""
    return next(r for r in rows if r["choice"]["weights"] == pick["choice"]["weights"]
                and r["choice"]["tta"] == "none" and not r["choice"]["ensemble"])


def gap(model: torch.nn.Module, row: dict[str, Any], data: Data, pad: int) -> dict[str, float]:
    """The generalization gap of the chosen weights: their training accuracy on as many training
    examples as validation has, against their validation accuracy (`row`), both through one view
    in eval mode, as the decision runs whose gap was projected measured it (test-time views and
    ensembles are ways to predict, not properties of the weights; through five views it cost a
    10-minute session 8 s)."""
    n = min(len(data.val), len(data.train))
    train = scores(predict_proba(model, data.train.x[:n], pad=pad), data.train.y[:n])["acc"]
    return {"train_acc": train, "gap": train - row["acc"]}


def early_note(summary: dict[str, Any]) -> str:
    """Why, when the chosen weights throw away most of the training: the best checkpoint came early."""
    step, steps = summary.get("best", {}).get("step"), summary.get("steps") or 0
    if step is None or not steps or step >= 0.5 * steps:
        return ""
    return (f"; the best weights are from step {step} of {steps} ({step / steps:.0%} of the training): every later "
            "checkpoint and the averaged weights did worse on validation, so the rest of the training is not used "
            "(the sign of overfitting, or of a validation split too small to tell them apart)")


def tie_note(rows: list[dict[str, Any]], pick: dict[str, Any]) -> str:
    """Why, when the accuracy alone could not decide."""
    tied = [r for r in rows if r is not pick and r["acc"] == pick["acc"]]
    if not tied:
        return ""
    return (f" (a tie on accuracy with {', '.join(r['name'] for r in tied)}, broken by the validation loss: "
            f"{sig(pick['loss'])} against {', '.join(sig(r['loss']) for r in tied)})")


def test_once(final_dir: Path, choice: dict[str, Any], data: Data) -> dict[str, float]:
    """The one look at the test split, with what `coach predict` will use (coach.train.predict)."""
    chosen = Predictor(Run.open(final_dir), Choice("chosen", choice["tta"], list(choice["ensemble"])), Run.open)
    return scores(chosen.probabilities(data.test.x), data.test.y)
