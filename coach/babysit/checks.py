"""`coach check`: the lectures' babysitting recipe, run by itself (CS231n lecture 6, steps 1-3).

In order, stopping where a later step would be meaningless:
  1. data sanity: shapes, class balance, statistics after preprocessing
  2. activations at initialization, layer by layer (vanishing, exploding, saturated, dead)
  3. initial loss against log(C) with regularization off (and that regularization raises it)
  4. gradient check of the model on a tiny float64 copy
  5. overfit a small fixed sample to 100% training accuracy; if it fails, say why from the trace
  6. learning-rate range test (Smith 2017: exponential sweep, smoothed loss, weights
     restored) and the lectures' quick probe of 1e-1, 1e-2, 1e-3, 1e-4 for ~100 iterations

The thresholds are ratios and fractions (of log C, of the first layer's spread, of the
initial loss), not numbers tuned to one dataset.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor, nn

from coach.babysit.findings import Finding, merged, problems
from coach.config import Config, RegularizeConfig
from coach.fmt import sig
from coach.data import Data, load_data
from coach.nn.gradcheck import gradcheck
from coach.nn.init_report import InitReport, init_report
from coach.nn.layers import DropConnectLinear, SpatialDropout, StochasticDepth
from coach.nn.models import CoachModel, build_model
from coach.optim import build_optimizer, split_decay
from coach.train.checkpoint import seed_everything
from coach.train.losses import make_loss

PROBE_LRS = (1e-1, 1e-2, 1e-3, 1e-4)


@dataclass
class CheckResult:
    findings: list[Finding] = field(default_factory=list)
    steps: dict[str, Any] = field(default_factory=dict)  # what each step measured, for the report

    @property
    def healthy(self) -> bool:
        return not problems(self.findings)

    def to_dict(self) -> dict[str, Any]:
        return {"healthy": self.healthy, "findings": [f.to_dict() for f in self.findings], "steps": self.steps}


def expected_initial_loss(loss_name: str, classes: int) -> float:
    """Scores near zero at init: cross-entropy gives log C, the multiclass SVM C - 1."""
    return math.log(classes) if loss_name == "cross_entropy" else float(classes - 1)


# ------------------------------------------------------------------------ step 1
def check_data(data: Data, model: CoachModel, out: CheckResult) -> None:
    x = data.train.x[:2000]
    with torch.no_grad():
        pre = model.preprocess(x).float()
    flat = pre.transpose(0, 1).reshape(pre.shape[1], -1) if pre.dim() > 2 else pre.T
    means, stds = flat.mean(1), flat.std(1)
    overall_std = pre.std().item()
    counts = torch.bincount(data.train.y, minlength=data.num_classes)
    out.steps["data"] = {"input_shape": list(data.input_shape), "kind": data.kind, "classes": data.num_classes,
                         "train": len(data.train), "val": len(data.val), "test": len(data.test),
                         "class_counts": counts.tolist(), "mean": pre.mean().item(), "std": overall_std,
                         "max_abs_channel_mean": means.abs().max().item(), "preprocess": data.preprocess.mode}
    off_centre = means.abs().max().item() > 0.5 * max(overall_std, 1e-12)
    off_scale = not 0.1 <= overall_std <= 10
    if off_centre or off_scale:
        what = " and ".join(w for w, bad in (("not zero-centred", off_centre), ("not unit-scaled", off_scale)) if bad)
        out.findings.append(Finding(
            "data_not_normalized", "warning",
            f"after preprocessing ({data.preprocess.mode}) the inputs are {what}: mean {pre.mean().item():.3g}, "
            f"largest channel mean {means.abs().max().item():.3g}, std {overall_std:.3g}",
            "zero-centre and scale the inputs: data.preprocess=standardize (per-channel mean/std, as ResNet) "
            "or channel_mean (VGG)", {"mean": pre.mean().item(), "std": overall_std,
                                      "channel_means": means.tolist(), "channel_stds": stds.tolist()}))
    if counts.min().item() * 5 < counts.max().item():
        out.findings.append(Finding(
            "class_imbalance", "info",
            f"the largest class has {counts.max().item()} training examples, the smallest {counts.min().item()}",
            "accuracy can hide poor minority classes; consider class-balanced sampling or reporting per-class "
            "accuracy", {"class_counts": counts.tolist()}))


# ------------------------------------------------------------------------ step 2
def check_init(model: CoachModel, batch: Tensor, out: CheckResult) -> InitReport:
    report = init_report(model, batch)
    layers = report.layers
    out.steps["init"] = [vars(layer) | {"hist_range": list(layer.hist_range)} for layer in layers]
    if not layers:
        return report
    first, last = layers[0].std, layers[-1].std
    evidence = {"stds": [round(s, 6) for s in report.stds()], "layers": [layer.name for layer in layers]}
    saturating = [layer for layer in layers if layer.frac_saturated is not None]
    if len(layers) >= 2 and (last < 0.1 * first or last < 1e-3):
        out.findings.append(Finding(
            "init_vanishing", "warning",
            f"activation std falls from {first:.3g} ({layers[0].name}) to {last:.3g} ({layers[-1].name}) at "
            "initialization: gradients will vanish too", _init_advice(model), evidence))
    elif len(layers) >= 2 and (last > 10 * first or last > 100) and not saturating:
        out.findings.append(Finding(
            "init_exploding", "warning",
            f"activation std grows from {first:.3g} ({layers[0].name}) to {last:.3g} ({layers[-1].name}) at "
            "initialization", _init_advice(model), evidence))
    worst_sat = max(saturating, key=lambda layer: layer.frac_saturated or 0.0, default=None)
    if worst_sat is not None and (worst_sat.frac_saturated or 0) > 0.3:
        out.findings.append(Finding(
            "saturation", "warning",
            f"{worst_sat.frac_saturated:.0%} of the {worst_sat.kind} outputs in {worst_sat.name} are saturated "
            "(|tanh| > 0.99 or sigmoid outside 0.01-0.99): their gradients are ~0",
            "initialize smaller (model.init=xavier), add batch norm (model.norm=batch) or use ReLU",
            {"saturated": {layer.name: layer.frac_saturated for layer in saturating}}))
    dead = [layer for layer in layers if layer.frac_dead > 0.3]
    if dead:
        worst = max(dead, key=lambda layer: layer.frac_dead)
        out.findings.append(Finding(
            "dead_relu", "warning",
            f"{worst.frac_dead:.0%} of the units in {worst.name} output zero for every input of a batch",
            "dead units never recover: lower the LR, initialize with kaiming, or try leaky_relu/elu",
            {"dead": {layer.name: layer.frac_dead for layer in dead}}))
    return report


def _init_advice(model: nn.Module) -> str:
    return ("use the initialization matched to the activation (model.init=kaiming for ReLU-like, xavier for "
            "tanh) or add batch norm (model.norm=batch)")


# ------------------------------------------------------------------------ step 3
NOISE_LAYERS = (nn.modules.dropout._DropoutNd, SpatialDropout, DropConnectLinear, StochasticDepth)


def noise_free(model: nn.Module) -> nn.Module:
    """Training mode without the noise: the dropout family off, batch norm still on batch statistics
    (at initialization its running statistics say nothing yet)."""
    model.train()
    for m in model.modules():
        if isinstance(m, NOISE_LAYERS):
            m.eval()
    return model


def regularization_terms(cfg: Config, model: CoachModel, batches: list[tuple[Tensor, Tensor]],
                         loss_off: float) -> dict[str, float]:
    """What each regularizer adds to the initial loss: the lectures' "crank up regularization,
    the loss should go up" measured term by term (weight decay coupled into the gradient counts
    as the L2 term it is; AdamW's decoupled decay is no loss term)."""
    r, o = cfg.regularize, cfg.optim
    plain = make_loss(cfg.train.loss)

    def mean_loss(m: nn.Module, loss_fn: Any) -> float:
        return sum(loss_fn(m(x), y).item() for x, y in batches) / len(batches)

    terms: dict[str, float] = {}
    with torch.no_grad():
        noisy = [m for m in model.modules() if isinstance(m, NOISE_LAYERS) and getattr(m, "p", 0) > 0]
        if noisy:
            m = copy.deepcopy(model).train()
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.seed)
                terms["dropout"] = mean_loss(m, plain) - loss_off
        if r.label_smoothing:
            terms["regularize.label_smoothing"] = mean_loss(
                noise_free(copy.deepcopy(model)), make_loss(cfg.train.loss, r.label_smoothing)) - loss_off
        decay = split_decay(model, r.decay_bias_and_norm)[0]
        square = sum(float((p.detach() ** 2).sum()) for p in decay)
        if r.l2:
            terms["regularize.l2"] = 0.5 * r.l2 * square
        if r.l1:
            terms["regularize.l1"] = r.l1 * sum(float(p.detach().abs().sum()) for p in decay)
        if o.weight_decay and o.name != "adamw":
            terms["optim.weight_decay"] = 0.5 * o.weight_decay * square
    return terms


def _dropout_keys(cfg: Config) -> str:
    r = cfg.regularize
    keys = [f"regularize.{k}={v:g}" for k, v in (("dropout", r.dropout), ("spatial_dropout", r.spatial_dropout),
                                                ("dropconnect", r.dropconnect),
                                                ("stochastic_depth", r.stochastic_depth)) if v]
    return ", ".join(keys) or "the model's dropout"


def check_initial_loss(cfg: Config, model: CoachModel, data: Data, out: CheckResult) -> float:
    """Step 3: with regularization off (dropout off too) the loss is about log C; with it on, it
    goes up slightly. A regularizer that multiplies it is too strong: named, with the factor to cut."""
    loss_fn = make_loss(cfg.train.loss)
    bs = min(cfg.train.batch_size, len(data.train))
    batches = [(data.train.x[i:i + bs], data.train.y[i:i + bs]) for i in range(0, min(len(data.train), 4 * bs), bs)]
    m = noise_free(copy.deepcopy(model))
    with torch.no_grad():
        losses = [loss_fn(m(x), y).item() for x, y in batches]
    loss0 = sum(losses) / len(losses)
    expected = expected_initial_loss(cfg.train.loss, data.num_classes)
    terms = regularization_terms(cfg, model, batches, loss0) if math.isfinite(loss0) else {}
    with_reg = loss0 + sum(terms.values())
    out.steps["initial_loss"] = {"loss": loss0, "expected": expected, "with_regularization": with_reg,
                                 "regularization_terms": terms, "loss_name": cfg.train.loss}
    if not math.isfinite(loss0) or loss0 > 1.5 * expected + 0.5 or loss0 < 0.5 * expected:
        out.findings.append(Finding(
            "initial_loss_mismatch", "warning" if math.isfinite(loss0) else "error",
            f"the initial loss is {sig(loss0)} but a model that knows nothing should give about {sig(expected)} "
            f"({'log C' if cfg.train.loss == 'cross_entropy' else 'C - 1'}, C = {data.num_classes})",
            "initial scores should be small: check the initialization scale (model.init) and the inputs' scale",
            {"loss": loss0, "expected": expected}))
    if math.isfinite(with_reg) and terms and with_reg > 1.5 * loss0:
        key, term = max(terms.items(), key=lambda kv: kv[1])
        # the lectures: regularization should raise the initial loss slightly; aim at a tenth of it
        factor = 10 ** math.ceil(math.log10(max(term / (0.1 * loss0), 1.0)))
        name = _dropout_keys(cfg) if key == "dropout" else f"{key}={sig(_value(cfg, key))}"
        out.findings.append(Finding(
            "regularization_too_strong", "warning",
            f"at initialization regularization takes the loss from {sig(loss0)} to {sig(with_reg)} "
            f"({sig(with_reg / loss0)}x; it should go up slightly); {name} adds {sig(term)}",
            f"cut {name.split('=')[0]} by about {factor:g}x" if key != "dropout" else
            "lower the drop probability (0.5 is the lectures' usual value; less for small models)",
            {"loss_off": loss0, "loss_on": with_reg, "terms": terms, "cut_by": factor}))
    return loss0


def _value(cfg: Config, key: str) -> float:
    section, name = key.split(".")
    return float(getattr(getattr(cfg, section), name))


# ------------------------------------------------------------------------ step 4
def check_gradients(model: CoachModel, data: Data, out: CheckResult) -> bool:
    result = gradcheck(model, data.train.x[:4], data.train.y[:4], per_param=4)
    out.steps["gradcheck"] = {"max_rel_error": result.max_rel_error, "verdict": result.verdict,
                              "params": [vars(p) for p in result.params]}
    if not result.passed:
        worst = result.worst()
        out.findings.append(Finding(
            "gradient_check_failed", "error",
            f"autograd and centred finite differences disagree for {worst.name}: relative error "
            f"{worst.max_rel_error:.2e} (above 1e-2 the gradient is wrong)",
            "a custom layer's backward is wrong, or the model is not deterministic in eval mode",
            {"max_rel_error": worst.max_rel_error, "parameter": worst.name}))
    return result.passed


# ------------------------------------------------------------------------ step 5
def _fresh(cfg: Config, data: Data, batch: Tensor) -> CoachModel:
    """A re-initialized copy of the model without regularization layers (lectures: turn it off)."""
    torch.manual_seed(cfg.seed)
    return build_model(cfg.model, data.input_shape, data.num_classes, RegularizeConfig(), data.preprocess,
                       batch=batch)


def check_overfit(cfg: Config, data: Data, out: CheckResult, init_findings: list[Finding],
                  max_steps: int = 300, sample_batches: int = 5, batch: int = 20) -> bool:
    n = min(len(data.train), sample_batches * batch)
    x, y = data.train.x[:n], data.train.y[:n]
    model = _fresh(cfg, data, x)
    opt = build_optimizer(cfg.optim.model_copy(update={"weight_decay": 0.0}), model)
    loss_fn = make_loss(cfg.train.loss)
    trace, acc, step = [], 0.0, 0
    model.train()
    for step in range(1, max_steps + 1):
        i = (step - 1) % max(n // batch, 1)
        xb, yb = x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch]
        if cfg.optim.name == "lbfgs":
            xb, yb = x, y
        loss = _step(model, opt, loss_fn, xb, yb)
        trace.append(loss)
        if not math.isfinite(loss):
            break
        if step % 10 == 0:
            with torch.no_grad():
                model.eval()
                acc = (model(x).argmax(1) == y).float().mean().item()
                model.train()
            if acc == 1.0:
                break
    out.steps["overfit"] = {"samples": n, "steps": step, "train_acc": acc, "trace": trace}
    if acc == 1.0:
        return True
    first = trace[0]  # the loss before any update
    finite = [t for t in trace if math.isfinite(t)]
    diverged = len(finite) < len(trace) or max(finite) > 3 * first
    best_drop = 1 - min(finite[-10:]) / first if finite and first > 0 else 0.0
    evidence = {"samples": n, "steps": step, "train_acc": acc, "first_loss": first,
                "last_loss": trace[-1] if trace else None}
    if diverged:
        out.findings.append(Finding(
            "lr_too_high", "error",
            f"overfitting {n} examples blew up: the loss went from {first:.3g} to "
            f"{trace[-1]:.3g} within {step} steps at optim.lr={cfg.optim.lr:g}",
            "lower the learning rate (try 10x lower, or the LR range test's suggestion)", evidence))
    elif best_drop < 0.1:
        bad_init = any(f.code in ("init_vanishing", "init_exploding", "saturation") for f in init_findings)
        code = "cannot_overfit" if bad_init else "lr_too_low"
        out.findings.append(Finding(
            code, "error" if bad_init else "warning",
            f"the loss stayed flat ({first:.3g} -> {min(finite):.3g}) over {step} steps on {n} examples",
            "fix the initialization first (see the init findings)" if bad_init else
            f"raise the learning rate (optim.lr={cfg.optim.lr:g} barely moves the weights)", evidence))
    else:
        out.findings.append(Finding(
            "cannot_overfit", "warning",
            f"on {n} examples the loss fell ({first:.3g} -> {min(finite):.3g}) then stalled at "
            f"{acc:.0%} training accuracy after {step} steps",
            "a model that cannot memorize a few examples is too small (raise model.width/depth), or the labels "
            "or the model have a bug", evidence))
    return False


def _step(model: nn.Module, opt: torch.optim.Optimizer, loss_fn: Any, x: Tensor, y: Tensor) -> float:
    def closure() -> Tensor:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        return loss

    if isinstance(opt, torch.optim.LBFGS):
        return float(opt.step(closure).detach())
    loss = closure()
    if torch.isfinite(loss):
        opt.step()
    return loss.item()


# ------------------------------------------------------------------------ step 6
def lr_range_test(cfg: Config, data: Data, start: float = 1e-7, end: float = 10.0, steps: int = 100,
                  beta: float = 0.98) -> dict[str, Any]:
    """Exponential LR sweep on a fresh copy (the model under check is untouched); returns
    the smoothed loss per LR and a suggestion: the LR of the smoothed minimum / 10."""
    bs = min(cfg.train.batch_size, len(data.train))
    model = _fresh(cfg, data, data.train.x[:256])
    opt = build_optimizer(cfg.optim.model_copy(update={"lr": start, "name": _sgd_like(cfg.optim.name)}), model)
    loss_fn = make_loss(cfg.train.loss)
    g = torch.Generator().manual_seed(cfg.seed)
    lrs, losses, avg, best = [], [], 0.0, math.inf
    model.train()
    for i in range(steps):
        lr = start * (end / start) ** (i / max(steps - 1, 1))
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(0, len(data.train), (bs,), generator=g)
        loss = _step(model, opt, loss_fn, data.train.x[idx], data.train.y[idx])
        if not math.isfinite(loss):
            break
        avg = beta * avg + (1 - beta) * loss
        smoothed = avg / (1 - beta ** (i + 1))
        lrs.append(lr)
        losses.append(smoothed)
        best = min(best, smoothed)
        if smoothed > 4 * best:
            break
    k = min(range(len(losses)), key=losses.__getitem__) if losses else 0
    return {"lrs": lrs, "losses": losses, "min_lr": lrs[k] if lrs else None,
            "suggested_lr": lrs[k] / 10 if lrs else None}


def _sgd_like(name: str) -> str:
    return "adam" if name == "lbfgs" else name


def lr_probe(cfg: Config, data: Data, lrs: tuple[float, ...] = PROBE_LRS, steps: int = 100) -> list[dict[str, Any]]:
    """The lectures' quick probe: ~100 iterations at each LR; does the loss drop?"""
    bs = min(cfg.train.batch_size, len(data.train))
    loss_fn = make_loss(cfg.train.loss)
    rows = []
    for lr in lrs:
        model = _fresh(cfg, data, data.train.x[:256])
        opt = build_optimizer(cfg.optim.model_copy(update={"lr": lr, "name": _sgd_like(cfg.optim.name)}), model)
        g = torch.Generator().manual_seed(cfg.seed)
        trace = []
        model.train()
        for _ in range(steps):
            idx = torch.randint(0, len(data.train), (bs,), generator=g)
            trace.append(_step(model, opt, loss_fn, data.train.x[idx], data.train.y[idx]))
            if not math.isfinite(trace[-1]):
                break
        first, last = trace[0], _mean(trace[-10:])
        with torch.no_grad():
            model.eval()
            val = data.val if len(data.val) else data.train
            val_acc = (model(val.x[:2000]).argmax(1) == val.y[:2000]).float().mean().item()
        rows.append({"lr": lr, "first": first, "last": last, "val_acc": val_acc, "trace": trace,
                     "drops": math.isfinite(last) and last < 0.9 * first,
                     # blew up at any point: non-finite, or 3x the starting loss
                     "diverged": not all(math.isfinite(t) for t in trace) or max(trace) > 3 * first})
    return rows


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else math.nan


def check_learning_rate(cfg: Config, data: Data, out: CheckResult, probe_steps: int = 100,
                        range_steps: int = 100) -> None:
    sweep = lr_range_test(cfg, data, steps=range_steps)
    lrs = tuple(sorted(set(PROBE_LRS) | {cfg.optim.lr}, reverse=True))
    probe = lr_probe(cfg, data, lrs, probe_steps)
    out.steps["lr_range"] = sweep
    out.steps["lr_probe"] = probe
    chance = 1.0 / data.num_classes
    learned = [r for r in probe if r["drops"]]
    if learned and max(r["val_acc"] for r in probe) < chance + 0.5 * chance:
        out.findings.append(Finding(
            "label_problem", "error",
            f"the training loss fell but validation accuracy stayed at chance ({max(r['val_acc'] for r in probe):.1%}"
            f" vs {chance:.1%}) for every LR tried: the labels look unrelated to the inputs",
            "check that labels and inputs are aligned (shuffled, mis-sorted or corrupted labels)",
            {"val_acc": {str(r['lr']): r["val_acc"] for r in probe}, "chance": chance}))
    mine = next(r for r in probe if r["lr"] == cfg.optim.lr)
    working = [r["lr"] for r in learned if not r["diverged"]]
    if mine["diverged"] and working:
        out.findings.append(Finding(
            "lr_too_high", "error",
            f"at optim.lr={cfg.optim.lr:g} the loss blew up within {probe_steps} iterations; it fell at "
            f"{', '.join(f'{lr:g}' for lr in working)}",
            f"use optim.lr={max(working):g} or lower (range test suggests {sweep['suggested_lr'] or 0:.2g})",
            {"probe": {str(r['lr']): [r["first"], r["last"]] for r in probe}}))
    elif not mine["drops"] and not mine["diverged"] and working and cfg.optim.lr < min(working):
        out.findings.append(Finding(
            "lr_too_low", "warning",
            f"at optim.lr={cfg.optim.lr:g} the loss barely moved in {probe_steps} iterations "
            f"({mine['first']:.3g} -> {mine['last']:.3g}); it fell at {', '.join(f'{lr:g}' for lr in working)}",
            f"raise optim.lr to about {min(working):g}-{max(working):g} (range test suggests "
            f"{sweep['suggested_lr'] or 0:.2g})", {"probe": {str(r['lr']): [r["first"], r["last"]] for r in probe}}))
    suggested = sweep.get("suggested_lr")
    said = {f.code for f in out.findings}
    if suggested and not {"lr_too_high", "lr_too_low"} & said:
        ratio = suggested / cfg.optim.lr
        if ratio > 10 or ratio < 0.1:
            code = "lr_too_low" if ratio > 10 else "lr_too_high"
            # the range test is a rough guide (the lectures: a coarse first estimate), and the probe
            # above found no failure at the configured LR: worth knowing, not a verdict
            out.findings.append(Finding(
                code, "info",
                f"the LR range test suggests optim.lr of about {sig(suggested)}, {sig(max(ratio, 1 / ratio))}x "
                f"{'above' if ratio > 10 else 'below'} the configured {sig(cfg.optim.lr)}",
                f"try optim.lr={sig(suggested)} (or search the LR around it: coach search)",
                {"suggested_lr": suggested, "configured_lr": cfg.optim.lr, "ratio": ratio}))


# --------------------------------------------------------------------------- all
def check(cfg: Config, data: Data | None = None, probe_steps: int = 100, overfit_steps: int = 300,
          range_steps: int = 100, say: Callable[[str], None] | None = None) -> CheckResult:
    """Run the babysitting checklist on cfg; returns findings and what each step measured.
    The step counts bound its cost: about range_steps + 5 x probe_steps training steps, and
    overfit_steps on batches of 20. say: where a line per finished step goes (None: nowhere)."""
    seed_everything(cfg.seed)
    data = data if data is not None else load_data(cfg.data, cfg.seed)
    batch = data.train.x[: min(256, len(data.train))]
    model = build_model(cfg.model, data.input_shape, data.num_classes, cfg.regularize, data.preprocess, batch=batch)
    out = CheckResult()

    def done(*names: str) -> None:
        for name in names:
            if say and name in out.steps:
                say(describe_step(name, out.steps))

    check_data(data, model, out)
    done("data")
    check_init(model, batch, out)
    done("init")
    init_findings = list(out.findings)
    loss0 = check_initial_loss(cfg, model, data, out)
    done("initial_loss")
    if not math.isfinite(loss0):
        out.findings = merged(out.findings)
        return out  # nothing downstream means anything with a NaN loss at step 0
    if not check_gradients(model, data, out):
        done("gradcheck")
        out.findings = merged(out.findings)
        return out  # training with wrong gradients is meaningless
    done("gradcheck")
    check_overfit(cfg, data, out, init_findings, max_steps=overfit_steps)
    done("overfit")
    check_learning_rate(cfg, data, out, probe_steps, range_steps)
    done("lr_range")
    out.findings = merged(out.findings)
    return out


def describe_step(name: str, s: dict[str, Any]) -> str:
    """One line for a finished step of the checklist, numbered as the lectures order them."""
    if name == "data":
        d = s["data"]
        return (f"1. data: {d['train']} train / {d['val']} val / {d['test']} test, {d['classes']} classes, "
                f"input {d['input_shape']}; after {d['preprocess']}: mean {sig(d['mean'])}, std {sig(d['std'])}")
    if name == "init":
        return f"2. activations at init (std per layer): {', '.join(sig(layer['std']) for layer in s['init'])}"
    if name == "initial_loss":
        i = s["initial_loss"]
        return (f"3. initial loss {sig(i['loss'])} (expected {sig(i['expected'])}); "
                f"with regularization {sig(i['with_regularization'])}")
    if name == "gradcheck":
        return f"4. gradient check: max relative error {sig(s['gradcheck']['max_rel_error'])} " \
               f"({s['gradcheck']['verdict']})"
    if name == "overfit":
        o = s["overfit"]
        return f"5. overfit {o['samples']} examples: {o['train_acc']:.0%} train accuracy after {o['steps']} steps"
    if name == "lr_range":
        r = s["lr_range"]
        probe = ", ".join(f"{sig(p['lr'])}: {sig(p['first'])}->{sig(p['last'])}" for p in s["lr_probe"])
        return f"6. LR range test suggests {sig(r['suggested_lr'] or float('nan'))}; probe (loss first->last) {probe}"
    raise ValueError(f"no such check step: {name}")
