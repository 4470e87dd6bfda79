"""Typed, frozen configuration and the registries of names -> builders.

Every choice a user makes is a dotted key (``optim.lr``, ``model.activation``) in one
`Config`. It is validated once, at the edge (YAML file, ``--set key=value``, Python
dict); errors name the dotted key and say what is allowed. Nothing downstream
re-validates or guesses.

Registries map the names a config may use to the functions that build them. The
modules that own the concepts (``coach.nn.activations``, ``coach.optim``...) register
into them; importing ``coach`` imports all of those, so a registry is always full
by the time a config is validated.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Callable, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from coach.atomic import atomic_write_bytes
from coach.errors import UserError


class Registry:
    """Names -> callables, with errors that list what is allowed."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def add(obj: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._items[name] = obj
            return obj

        return add

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def check(self, name: str) -> str:
        if name not in self._items:
            raise ValueError(f"unknown {self.kind} {name!r}; allowed: {', '.join(self.names())}")
        return name

    def get(self, name: str, key: str | None = None) -> Callable[..., Any]:
        try:
            return self._items[self.check(name)]
        except ValueError as e:
            raise UserError(f"{key}: {e}" if key else str(e)) from None


ACTIVATIONS = Registry("activation")
INITS = Registry("initialization")
MODELS = Registry("model")
DATASETS = Registry("dataset")
OPTIMIZERS = Registry("optimizer")
SCHEDULES = Registry("schedule")
LOSSES = Registry("loss")


DURATION_FORMS = "90s, 20m, 1.5h or 1h30m"


def parse_duration(value: Any, bare_seconds: bool = True) -> float | None:
    """'90s', '20m', '1.5h', '1h30m', '2m05s' -> seconds. A bare number means seconds in a config
    file (bare_seconds); on the command line (bare_seconds=False) it is refused, since `--budget 1`
    could mean one second, one minute or one hour."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and bare_seconds:
        return float(value)
    text = str(value).strip().lower()
    number = r"([0-9]+(?:\.[0-9]+)?|\.[0-9]+)"
    m = re.fullmatch(rf"(?:{number}h)?\s*(?:{number}m)?\s*(?:{number}s)?", text)
    if text and m and any(m.groups()):
        h, mins, sec = (float(g) if g else 0.0 for g in m.groups())
        return h * 3600 + mins * 60 + sec
    if bare_seconds and re.fullmatch(number, text):
        return float(text)
    unit = " with a unit" if re.fullmatch(number, text) else ""
    raise ValueError(f"{value!r} is not a duration{unit}; write it as e.g. {DURATION_FORMS}")


def _numbers_in(v: Any) -> list[Any]:
    return list(v) if isinstance(v, (list, tuple)) else [v]


def _types_in(annotation: Any) -> set[Any]:
    """Every type an annotation names: int | None -> {int, NoneType}; list[int] -> {list, int}."""
    from typing import get_args, get_origin
    args = get_args(annotation)
    if get_origin(annotation) is Annotated:
        return _types_in(args[0])
    return {annotation} | {t for a in args for t in _types_in(a)} if args else {annotation}


# Upper bounds on sizes and counts: a value past them is a typo or would exhaust memory (and
# would otherwise reach torch first, as a C++ stack trace). They are far above any use.
MAX_WIDTH, MAX_DEPTH, MAX_IMAGE, MAX_PAD = 16_384, 256, 8_192, 256
MAX_SIZE, MAX_BATCH, MAX_EPOCHS = 1_000_000, 1_048_576, 1_000_000
MAX_COUNT = 10**12  # steps, examples, patience...
MAX_SECONDS = 30 * 24 * 3600.0  # a month


class _Section(BaseModel):
    """Every section: frozen, no unknown keys, no booleans read as numbers, no inf or NaN."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_as_number(cls, v: Any, info: Any) -> Any:
        # YAML reads `true` as a boolean and pydantic would take it as 1: a typo, not a size
        types = _types_in(cls.model_fields[info.field_name].annotation)
        if bool not in types and types & {int, float} and any(isinstance(x, bool) for x in _numbers_in(v)):
            raise ValueError("expected a number, got a boolean (true/false)")
        return v

    @field_validator("*", mode="after")
    @classmethod
    def _finite(cls, v: Any) -> Any:
        if any(isinstance(x, float) and not math.isfinite(x) for x in _numbers_in(v)):
            raise ValueError("must be a finite number (not inf or nan)")
        return v


class DataConfig(_Section):
    # None: the path decides (an .npz, a CIFAR-10 folder, IDX files, class folders), else fashion-mnist
    name: str | None = None
    path: str | None = None  # image-folder / npz file / directory holding IDX files
    val_fraction: float = Field(0.1, gt=0, lt=1)
    # Only for sources that ship no test split (digits, image folders, npz without x_test).
    test_fraction: float = Field(0.2, gt=0, lt=1)
    limit: int | None = Field(None, gt=0, le=MAX_COUNT, description="use at most this many training examples")
    per_class: int | None = Field(None, gt=0, le=MAX_COUNT,
                                  description="use at most this many training examples per class")
    classes: list[int] | None = Field(None, description="keep only these classes (relabelled 0..k-1 in this order)")
    # The train/val split has its own seed, so runs with different seeds share one validation set
    # (ensembles of them are then evaluated honestly).
    split_seed: int = 0
    preprocess: Literal["none", "mean_image", "channel_mean", "standardize", "pca", "zca"] = "standardize"
    pca_components: float | None = Field(None, gt=0, le=MAX_SIZE, description="k components (>=1) or variance fraction (<1)")
    zca_epsilon: float = Field(1e-2, gt=0)
    image_size: tuple[Annotated[int, Field(ge=1, le=MAX_IMAGE)], Annotated[int, Field(ge=1, le=MAX_IMAGE)]] = (32, 32)
    # image-folder resize (height, width)
    color: Literal["auto", "rgb", "gray"] = "auto"  # image-folder
    layout: Literal["auto", "vector", "signal", "image"] = "auto"  # npz: how to read x

    _check_name = field_validator("name")(lambda v: v if v is None else DATASETS.check(v))

    @model_validator(mode="after")
    def _path_read(self) -> "DataConfig":
        """A source that reads no files refuses a path (the values alone say so; which source reads
        a path, and whether the disk agrees, the data layer decides: coach.data.resolve)."""
        if self.path and self.name in ("digits", "mnist1d"):
            raise ValueError(f"data.path={self.path} has no effect with data.name={self.name} (it reads no files); "
                             "leave data.path out, or leave data.name out to read the path")
        return self


class ModelConfig(_Section):
    name: str = "convnet"
    activation: str = "relu"
    activation_kwargs: dict[str, float] = Field(default_factory=dict)
    init: str = "kaiming"
    init_kwargs: dict[str, float | str] = Field(default_factory=dict)
    width: int = Field(32, gt=0, le=MAX_WIDTH)
    depth: int = Field(2, ge=1, le=MAX_DEPTH)
    hidden: list[Annotated[int, Field(gt=0, le=MAX_WIDTH)]] | None = Field(None, max_length=MAX_DEPTH)
    # mlp: explicit hidden sizes, overrides width/depth
    blocks: int = Field(2, ge=1, le=MAX_DEPTH, description="convs per convnet stage / residual blocks per resnet stage")
    norm: Literal["batch", "none"] = "batch"
    pool: Literal["max", "fractional", "avg"] = "max"

    _check_act = field_validator("activation")(lambda v: ACTIVATIONS.check(v))
    _check_init = field_validator("init")(lambda v: INITS.check(v))
    _check_model = field_validator("name")(lambda v: MODELS.check(v))


class RegularizeConfig(_Section):
    # Probabilities here are DROP probabilities (torch/Keras convention);
    # the lectures' keep probability is 1 - dropout.
    dropout: float = Field(0.0, ge=0, lt=1)
    spatial_dropout: float = Field(0.0, ge=0, lt=1)
    dropconnect: float = Field(0.0, ge=0, lt=1)
    stochastic_depth: float = Field(0.0, ge=0, lt=1, description="drop probability of the deepest residual block")
    l2: float = Field(0.0, ge=0, description="adds 0.5*l2*||w||^2 to the loss")
    l1: float = Field(0.0, ge=0, description="adds l1*|w| to the loss (l1 and l2 together: elastic net)")
    decay_bias_and_norm: bool = False  # by default biases and norm parameters are not regularized
    label_smoothing: float = Field(0.0, ge=0, lt=1)


class AugmentConfig(_Section):
    hflip: bool = False
    crop_padding: int = Field(0, ge=0, le=MAX_PAD, description="random crop after zero padding by this many pixels")
    resized_crop: bool = False
    crop_scale: tuple[float, float] = (0.35, 1.0)
    crop_ratio: tuple[float, float] = (0.75, 1.333)
    brightness: float = Field(0.0, ge=0)
    contrast: float = Field(0.0, ge=0)
    pca_jitter: float = Field(0.0, ge=0, description="std of AlexNet PCA colour noise")
    cutout: int = Field(0, ge=0, le=MAX_IMAGE, description="side of the square cut out, in pixels")
    mixup: float = Field(0.0, ge=0, description="Beta(alpha, alpha) parameter; 0 = off")
    cutmix: float = Field(0.0, ge=0)
    shift: int = Field(0, ge=0, le=MAX_SIZE, description="1-D signals: max circular shift")
    scale: float = Field(0.0, ge=0, description="1-D signals: amplitude scale jitter")
    noise: float = Field(0.0, ge=0, description="1-D signals and vectors: Gaussian noise std")


class OptimConfig(_Section):
    name: str = "adam"
    lr: float = Field(1e-3, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    # Passed to torch.optim as-is: coupled (L2 gradient) for sgd/adam/rmsprop/adagrad,
    # decoupled for adamw. regularize.l2 is the explicit loss-term alternative.
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)
    alpha: float = Field(0.99, gt=0, lt=1, description="rmsprop decay rate")

    _check_name = field_validator("name")(lambda v: OPTIMIZERS.check(v))

    @field_validator("betas")
    @classmethod
    def _betas_are_decays(cls, v: tuple[float, float]) -> tuple[float, float]:
        # Adam's moment decays: torch would refuse them deep inside the optimizer's constructor.
        if not all(0 <= b < 1 for b in v):
            raise ValueError(f"each beta is a decay rate in [0, 1), got {list(v)}")
        return v


class ScheduleConfig(_Section):
    name: str = "constant"
    warmup: float = Field(0.0, ge=0, description="warmup length: steps (>=1) or fraction of training (<1)")
    gamma: float = Field(0.1, gt=0, description="decay factor (step, multistep, exponential per epoch)")
    step_epochs: float = Field(1.0, gt=0, description="step: decay every this many epochs")
    milestones: list[float] = Field(default_factory=lambda: [0.5, 0.75], description="multistep: fractions of training")
    decay: float = Field(1.0, ge=0, description="1/t: lr / (1 + decay * epoch)")
    min_lr: float = Field(0.0, ge=0)
    cycles: int = Field(1, ge=1, le=MAX_EPOCHS, description="cyclic: number of cosine cycles (SGDR)")
    pct_start: float = Field(0.3, gt=0, lt=1, description="onecycle: fraction spent rising")
    patience: int = Field(2, ge=0, le=MAX_COUNT, description="plateau: evaluations without improvement")
    factor: float = Field(0.1, gt=0, lt=1, description="plateau: LR multiplier")

    _check_name = field_validator("name")(lambda v: SCHEDULES.check(v))

    @field_validator("milestones")
    @classmethod
    def _milestones_are_fractions(cls, v: list[float]) -> list[float]:
        # a milestone at or past the end of training would never fire: refused, not ignored
        if not all(0 < m < 1 for m in v):
            raise ValueError(f"milestones are fractions of training in (0, 1), got {v}")
        return v


class TrainConfig(_Section):
    epochs: int = Field(10, ge=1, le=MAX_EPOCHS)
    max_steps: int | None = Field(None, ge=1, le=MAX_COUNT)
    batch_size: int = Field(128, ge=1, le=MAX_BATCH)
    time_budget: float | None = Field(None, gt=0, le=MAX_SECONDS, description="seconds, or '90s', '20m', '1h'")
    fit_to_budget: bool = Field(False, description="with time_budget: shorten the LR schedule so it ends within "
                                                   "the budget (re-planned at each evaluation), not just stop")
    loss: str = "cross_entropy"
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: fp32 or bf16 autocast (fp16 with loss scaling on a CUDA device without bf16), "
                            "whichever times faster on this machine's own steps (coach.train.speed)")
    channels_last: bool | Literal["auto"] = Field(
        "auto", description="images: NHWC memory layout; auto: if it times faster here")
    sync_batchnorm: bool = Field(False, description="DDP: batch-norm statistics over the whole batch across "
                                                    "processes, as one process computes them")
    grad_clip: float | None = Field(None, gt=0)
    ema: float | None = Field(None, gt=0, lt=1, description="Polyak/EMA decay, e.g. 0.999")
    early_stopping: int | None = Field(None, ge=1, le=MAX_COUNT, description="patience in evaluations")
    monitor: str = "val_acc"
    mode: Literal["min", "max"] = "max"
    eval_every: int | None = Field(None, ge=1, le=MAX_COUNT, description="steps between validations; default once per epoch")
    checkpoint_every: int | None = Field(None, ge=1, le=MAX_COUNT,
                                         description="steps between checkpoints; default each eval")
    log_every: int = Field(20, ge=1, le=MAX_COUNT)
    monitor_every: int = Field(50, ge=0, le=MAX_COUNT, description="steps between live-monitor samples; 0 = off")
    snapshots: bool = False
    progress: bool = True
    tensorboard: bool = Field(False, description="also write TensorBoard event files in the run directory "
                                                 "(needs the tensorboard package)")
    max_nonfinite: int = Field(5, ge=1, le=MAX_COUNT, description="non-finite steps in a row before a roll-back")
    max_rollbacks: int = Field(3, ge=0, le=1000)

    _budget = field_validator("time_budget", mode="before")(lambda v: parse_duration(v))
    _check_loss = field_validator("loss")(lambda v: LOSSES.check(v))


BUILTIN_MODELS = ("mlp", "convnet", "resnet")
# (key, default, the built-in models that use it): anything else leaves it unused
HONOURED = [("regularize.dropconnect", 0.0, ("mlp",)),
            ("regularize.stochastic_depth", 0.0, ("resnet",)),
            ("regularize.spatial_dropout", 0.0, ("convnet",)),
            ("model.pool", "max", ("convnet",)),
            ("model.hidden", None, ("mlp",)),
            ("model.blocks", 2, ("convnet", "resnet"))]


class Config(_Section):
    seed: int = 0
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    regularize: RegularizeConfig = Field(default_factory=RegularizeConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    # dotted config key -> distribution expression, e.g. {"optim.lr": "loguniform(1e-4, 1e-1)"}; see coach.sweep
    search: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _mlp_for_vectors(self) -> "Config":
        if self.data.preprocess in ("pca",) and self.model.name != "mlp":
            raise ValueError("data.preprocess=pca gives flat vectors; use model.name=mlp")
        return self

    @model_validator(mode="after")
    def _no_setting_ignored(self) -> "Config":
        """A setting the chosen model or optimizer cannot honour is an error naming both keys,
        never a silent no-op."""
        name = self.model.name
        for key, default, honoured_by in HONOURED:
            section, field = key.split(".")
            v = getattr(getattr(self, section), field)
            if v != default and name in BUILTIN_MODELS and name not in honoured_by:
                raise ValueError(f"{key}={v} has no effect with model.name={name}; it is built into "
                                 f"{' and '.join(honoured_by)} only: leave it at {default} or change model.name")
        if self.optim.name == "lbfgs":
            # the lectures: L-BFGS is for full-batch, deterministic problems: "all noise off"
            noisy = [k for k in ("dropout", "spatial_dropout", "dropconnect", "stochastic_depth")
                     if getattr(self.regularize, k)]
            noisy += [f"augment.{k}" for k, v in self.augment.model_dump().items()
                      if v and not isinstance(v, tuple)]
            if noisy:
                raise ValueError(f"optim.name=lbfgs needs a deterministic full-batch loss (the lectures: turn all "
                                 f"sources of noise off), but {', '.join(n if '.' in n else 'regularize.' + n for n in noisy)} "
                                 "adds noise; set it to 0/false or use another optimizer")
            if self.optim.weight_decay:
                raise ValueError("optim.weight_decay has no effect with optim.name=lbfgs (its single parameter group "
                                 "takes none); use regularize.l2 for the same penalty as a loss term")
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def set(self, **settings: Any) -> "Config":
        """A new config with settings by their short name, as a notebook writes them:
        cfg.set(epochs=10, lr=3e-3, batch_size=64). A name two sections share (name, path...)
        is an error that names the dotted keys to use with replace()."""
        owners: dict[str, list[str]] = {}
        for section, info in type(self).model_fields.items():
            sub = getattr(self, section)
            for leaf in (type(sub).model_fields if isinstance(sub, BaseModel) else {section: None}):
                owners.setdefault(leaf, []).append(f"{section}.{leaf}" if isinstance(sub, BaseModel) else section)
        dotted = {}
        for key, value in settings.items():
            found = owners.get(key, [])
            if len(found) != 1:
                raise UserError(f"{key}: " + (f"ambiguous ({', '.join(found)}); use cfg.replace(**{{'{found[0]}': ...}})"
                                              if found else "no such setting; e.g. epochs, lr, batch_size, width, "
                                              "dropout, weight_decay (dotted keys: cfg.replace(**{'optim.lr': 0.1}))"))
            dotted[found[0]] = value
        return self.replace(**dotted)

    def replace(self, **overrides: Any) -> "Config":
        """A new config with dotted-key overrides: cfg.replace(**{'optim.lr': 0.1})."""
        tree = self.to_dict()
        for key, value in overrides.items():
            _set_dotted(tree, key, value)
        return make_config(tree)


def _format_errors(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "config"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            section = _section_for(e["loc"][:-1])
            allowed = ", ".join(section.model_fields) if section else ""
            msg = f"unknown key; allowed keys here: {allowed}"
        elif "input" in e and e["type"] not in ("missing",) and e["loc"] and not isinstance(e["input"], dict):
            # a rule over a whole section or config names its keys in its message
            msg = f"{msg} (got {e['input']!r})"
        if key == "data" and msg.startswith("data."):  # a data-section rule already names its keys
            lines.append(msg)
            continue
        lines.append(f"{key}: {msg}")
    return "invalid config:\n  " + "\n  ".join(lines)


def _section_for(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] = Config
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return None if field is None else model
        model = field.annotation
    return model


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for p in parts[:-1]:
        child = node.setdefault(p, {})
        if not isinstance(child, dict):
            raise UserError(f"{dotted}: {p!r} is a value, not a section")
        node = child
    node[parts[-1]] = value


def make_config(base: dict[str, Any] | None = None, overrides: list[str] | None = None) -> Config:
    """Validate a dict plus ``key=value`` overrides (values parsed as YAML)."""
    tree = {k: (dict(v) if isinstance(v, dict) else v) for k, v in (base or {}).items()}
    for item in overrides or []:
        if "=" not in item:
            raise UserError(f"--set {item!r}: expected key=value, e.g. optim.lr=0.01")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        _set_dotted(tree, key.strip(), value)
    try:
        return Config.model_validate(tree)
    except ValidationError as e:
        raise UserError(_format_errors(e)) from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (or the defaults when path is None) and apply overrides."""
    tree: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise UserError(f"{p}: config file not found")
        try:
            tree = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise UserError(f"{p}: not valid YAML: {e}") from None
        if not isinstance(tree, dict):
            raise UserError(f"{p}: a config is a mapping of sections (data:, model:, ...)")
    return make_config(tree, overrides)


def save_config(cfg: Config, path: str | Path) -> None:
    atomic_write_bytes(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False).encode())
