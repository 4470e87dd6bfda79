"""A model coach did not build: the user's own `nn.Module`, or a function of hyperparameters
that builds one (for the autopilot and search: `lambda width, dropout: MyNet(width, dropout)`).

coach puts the preprocessing it fits on the training split in front of the module
(`OwnModel`: preprocess -> the module), so what is trained, saved and predicted with takes raw
inputs, as a model coach built does. The run's config names the model `module`.

A factory's parameters are read by name from the config (`HYPERPARAMETERS`): `width` is
model.width, `dropout` regularize.dropout, `input_shape` and `num_classes` come from the data.
Those coach knows are always set from the config, a default in the signature too (coach.fit(f,
data, width=128) says otherwise); a parameter coach does not know must have a default (it is
left at it). A module instance
cannot be changed, so regularization settings that live inside a model (dropout, ...) must be
0 in the config: a setting that cannot be honoured is an error.

Saving: weights are safetensors of the wrapped model, as for coach's models; the architecture
is saved with torch.export (a program that runs without the user's code), so `coach predict`
and `coach evaluate` work in another process. A module that torch.export cannot trace
(data-dependent Python control flow) is saved without it: loading then needs the module again
(`run.load_model(model=MyNet())`).
"""
from __future__ import annotations

import copy
import inspect
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from coach.atomic import atomic_write
from coach.config import MODELS, Config, ModelConfig, RegularizeConfig
from coach.errors import UserError
from coach.nn.init_report import STOCHASTIC

# factory parameter -> (config section, key) or the data's
HYPERPARAMETERS: dict[str, tuple[str, str]] = {
    "width": ("model", "width"), "depth": ("model", "depth"), "blocks": ("model", "blocks"),
    "hidden": ("model", "hidden"), "activation": ("model", "activation"), "norm": ("model", "norm"),
    "dropout": ("regularize", "dropout"), "spatial_dropout": ("regularize", "spatial_dropout"),
    "dropconnect": ("regularize", "dropconnect"), "stochastic_depth": ("regularize", "stochastic_depth")}
FROM_DATA = ("input_shape", "num_classes")
IN_MODEL = ("dropout", "spatial_dropout", "dropconnect", "stochastic_depth")  # what only a model can honour
# the checks' name for the drop probabilities inside an instance (its dropout, spatial dropout, drop-connect
# and stochastic-depth layers): a regularization setting like the config's, turned off or cut on copies
MODULE_DROPOUT = "module.dropout"


def dropout_layers(module: nn.Module) -> list[nn.Module]:
    """The layers of module that drop with a probability p > 0."""
    return [m for m in module.modules() if isinstance(m, STOCHASTIC) and float(getattr(m, "p", 0.0) or 0.0) > 0]


@MODELS.register("module")
def _passed_in(*_: Any) -> Any:
    raise UserError("model.name=module: this run's model was passed from Python; pass it again (to resume: "
                    "coach.fit(resume=DIR, data=..., model=MyNet())), or load the run's saved model "
                    "(coach.Run.open(DIR).load_model())")


class OwnModel(nn.Module):
    """preprocess -> the user's module (which returns class scores, N x num_classes)."""

    def __init__(self, net: nn.Module, num_classes: int, preprocess: nn.Module | None = None):
        super().__init__()
        self.preprocess = copy.deepcopy(preprocess) if preprocess is not None else nn.Identity()  # see CoachModel
        self.net = net
        self.num_classes = num_classes

    def forward(self, x: Tensor) -> Tensor:
        return self.net(self.preprocess(x))


class Own:
    """The user's model as coach builds from it: a module (each build is a copy of it as given,
    untrained) or a factory of hyperparameters (each build calls it)."""

    def __init__(self, model: nn.Module | Callable[..., nn.Module]):
        self.module = model if isinstance(model, nn.Module) else None
        self.factory = None if self.module is not None else model
        if self.module is None and not callable(model):
            raise UserError(f"model: {type(model).__name__} is neither an nn.Module nor a function that builds one")
        self.params: dict[str, inspect.Parameter] = {}
        if self.factory is not None:
            try:
                self.params = dict(inspect.signature(self.factory).parameters)
            except (TypeError, ValueError):
                self.params = {}
            unknown = [p.name for p in self.params.values() if p.default is inspect.Parameter.empty
                       and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
                       and p.name not in HYPERPARAMETERS and p.name not in FROM_DATA]
            if unknown:
                raise UserError(f"model: the factory's parameter(s) {unknown} have no default and are not "
                                f"hyperparameters coach sets; coach sets {sorted(HYPERPARAMETERS)} and "
                                f"{list(FROM_DATA)} (give the others defaults)")

    @property
    def name(self) -> str:
        obj = self.module if self.module is not None else self.factory
        return getattr(obj, "__name__", None) or type(obj).__name__

    @property
    def can_widen(self) -> bool:
        """A wider copy exists for a factory that takes a width (an instance has one size)."""
        return bool({"model.width", "model.hidden"} & set(self.searchable))

    @property
    def searchable(self) -> list[str]:
        """The config keys this model's builds follow (a factory's hyperparameters)."""
        return [".".join(HYPERPARAMETERS[p]) for p in self.params if p in HYPERPARAMETERS]

    def unheeded(self, keys: list[str]) -> list[str]:
        """The config keys among keys that only a model can honour (model.*, dropout and the
        like) and this one does not take."""
        inside = [k for k in keys if k.startswith("model.") or k in {f"regularize.{r}" for r in IN_MODEL}]
        return [k for k in inside if k not in self.searchable]

    def honoured(self, cfg: Config) -> None:
        """A setting that only a model can honour (model.width, model.init..., regularize.dropout...),
        set away from its default for a model that does not take it, is an error (not silently
        ignored): coach does not build or initialize your module."""
        default = ModelConfig()
        set_keys = [f"model.{k}" for k in ModelConfig.model_fields if k != "name"
                    and getattr(cfg.model, k) != getattr(default, k)]
        set_keys += [f"regularize.{r}" for r in IN_MODEL if getattr(cfg.regularize, r)]
        bad = [f"{k}={getattr(getattr(cfg, k.split('.')[0]), k.split('.')[1])}" for k in self.unheeded(set_keys)]
        if bad:
            raise UserError(f"{', '.join(bad)}: coach cannot add this to your own module "
                            + ("(the factory has no such parameter)" if self.factory else "")
                            + "; put it in your module, or give a factory that takes it")

    def build(self, cfg: Config, input_shape: tuple[int, ...], num_classes: int, preprocess: nn.Module | None,
              batch: Tensor | None = None, reg: RegularizeConfig | None = None,
              model: ModelConfig | None = None, copy_module: bool = True) -> OwnModel:
        """A fresh model: the module as given (copied) or the factory called with the config's
        hyperparameters (model/reg override cfg's, for the checks' controls). copy_module=False:
        the module itself (coach.fit trains it in place)."""
        net = self.module if self.module is not None and not copy_module else \
            self.net(cfg, input_shape, num_classes, reg, model)
        own = OwnModel(net, num_classes, preprocess)
        if batch is not None:
            check_output(own, batch[:8], num_classes)
        return own

    @property
    def dropout(self) -> float:
        """The largest drop probability inside an instance (0 for a factory: its dropout is the config's)."""
        return max((float(m.p) for m in dropout_layers(self.module)), default=0.0) if self.module is not None else 0.0

    def with_dropout(self, p: float) -> "Own":
        """An Own of a copy of the instance whose dropout layers drop at most p (each scaled by
        p / the largest: 0 turns them all off)."""
        assert self.module is not None
        copied, top = copy.deepcopy(self.module), self.dropout
        for m in dropout_layers(copied):
            m.p = float(m.p) * p / top if top else 0.0
        return Own(copied)

    def net(self, cfg: Config, input_shape: tuple[int, ...], num_classes: int, reg: RegularizeConfig | None = None,
            model: ModelConfig | None = None) -> nn.Module:
        """The bare module (no preprocessing): a copy of the instance, or the factory's build."""
        if self.module is not None:  # coach's controls and checks run on the CPU, as the data are there
            return copy.deepcopy(self.module).cpu()
        sections = {"model": model or cfg.model, "regularize": reg or cfg.regularize}
        kwargs = {p: getattr(sections[HYPERPARAMETERS[p][0]], HYPERPARAMETERS[p][1])
                  for p in self.params if p in HYPERPARAMETERS}
        kwargs |= {p: {"input_shape": tuple(input_shape), "num_classes": num_classes}[p]
                   for p in self.params if p in FROM_DATA}
        net = self.factory(**kwargs)  # type: ignore[misc]
        if not isinstance(net, nn.Module):
            raise UserError(f"model: the factory returned {type(net).__name__}, not an nn.Module")
        return net


def check_output(model: nn.Module, batch: Tensor, num_classes: int) -> None:
    """The module must map a batch to N x num_classes scores; say so clearly if it does not."""
    was = model.training
    model.eval()
    device = next(model.parameters(), batch).device  # the module's (it may arrive on a GPU)
    if isinstance(model, OwnModel):
        model.preprocess.to(device)
    try:
        with torch.no_grad():
            out = model(batch.to(device))
    except Exception as e:  # the user's forward: any error, named with the input it got
        raise UserError(f"model: your module failed on a batch of shape {tuple(batch.shape)} (after coach's "
                        f"preprocessing): {e.__class__.__name__}: {str(e).splitlines()[0][:200]}") from None
    finally:
        model.train(was)
    if not isinstance(out, Tensor) or out.shape != (len(batch), num_classes):
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise UserError(f"model: your module returned {got} for a batch of {len(batch)}; coach needs class scores "
                        f"of shape ({len(batch)}, {num_classes}) (one per class, before softmax)")


def as_own(model: Any) -> Own | None:
    """Own for a user's module or factory; None for nothing or a model coach built."""
    from coach.nn.models import CoachModel
    if model is None or isinstance(model, (CoachModel, OwnModel)):
        return None
    return model if isinstance(model, Own) else Own(model)


# ----------------------------------------------------------------------------- saving
class Exported(nn.Module):
    """A model loaded from torch.export: inference only (it was exported in eval mode), so
    train()/eval() leave it as it is rather than fail."""

    def __init__(self, program: nn.Module, num_classes: int):
        super().__init__()
        self.program = program
        self.num_classes = num_classes

    def forward(self, x: Tensor) -> Tensor:
        return self.program(x)

    def train(self, mode: bool = True) -> "Exported":
        self.training = mode
        return self

    def state_dict(self, *args: Any, **kwargs: Any) -> Any:
        return self.program.state_dict(*args, **kwargs)

    def load_state_dict(self, state: Any, strict: bool = True, assign: bool = False) -> Any:
        return self.program.load_state_dict(state, strict=strict, assign=assign)


def export_model(model: nn.Module, example: Tensor, path: Path) -> str | None:
    """Save model's architecture and weights with torch.export (eval mode, any batch size),
    written whole or not at all; None, or why it could not be exported."""
    m = copy.deepcopy(model).cpu().eval()
    x = example[:2].detach().cpu()
    try:
        program = torch.export.export(m, (x,), dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
    except Exception as e:  # torch.export's many tracing errors: one line says why
        return f"{e.__class__.__name__}: {str(e).strip().splitlines()[0][:200]}"
    atomic_write(path, lambda f: torch.export.save(program, f))
    return None


def load_exported(path: Path, num_classes: int) -> Exported:
    if not path.exists():
        raise UserError(f"{path}: no exported model; this run's module could not be exported, so loading it needs "
                        "the module: run.load_model(model=MyNet(...))")
    return Exported(torch.export.load(str(path)).module(), num_classes)
