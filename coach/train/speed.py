"""The machine's speed: numeric precision and memory layout, chosen by measuring this machine.

oneDNN's CPU convolutions prefer channels-last (NHWC) tensors, and a CPU with native BF16
(AVX-512 BF16, AMX) moves half the bytes under bf16 autocast; on a GPU, autocast and
channels-last feed the tensor cores. Neither is faster everywhere (a small MLP gains nothing;
emulated bf16 is slower), so `train.precision=auto` and `train.channels_last=auto` are
settled by timing a few real training steps of the run's own model in each variant (a copy:
the model, its optimizer state and the random streams are left as they were) and keeping the
fastest, unless it is within the timing noise of fp32. Autocast keeps the loss, the softmax
and batch-norm statistics in fp32 (torch's autocast op lists), so accuracy at equal epochs is
unchanged (bench/speed.py shows both). `torch.compile` is not among the variants: on this
2-core CPU it measured slower than bf16 + channels-last (1,570 vs 2,050 images/s) after a
36 s compile.

The choice is written into the run's config (resolved values), so a resumed run repeats it
instead of timing again.
"""
from __future__ import annotations

import copy
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator

import torch
from torch import Tensor, nn

from coach.config import Config
from coach.data import Data
from coach.optim import build_optimizer
from coach.train import checkpoint as ckpt
from coach.train.losses import make_loss

MIN_RUN_SECONDS = 60.0  # a run shorter than this is not worth timing variants for (their first steps alone
# cost seconds: oneDNN builds its kernels for each new layout and precision)
TIMING_SHARE = 0.05  # timing the other variants may cost at most this share of the run's expected time
NOISE = 0.05  # a variant must be this much faster than fp32 to be chosen


def native_bf16(device: torch.device) -> bool:
    """bf16 runs at full speed here: a CUDA device that supports it, a CPU with AVX-512 BF16 or AMX."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        cpu = torch.cpu
        return bool(getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
                    or getattr(cpu, "_is_amx_tile_supported", lambda: False)())
    return False


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a resolved precision: bf16 on CUDA and CPUs, fp16 (with a loss
    scaler) on CUDA only; 'auto' that was not resolved by measurement means bf16/fp16 on CUDA."""
    if precision == "fp32" or device.type not in ("cuda", "cpu"):
        return None
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if precision == "fp16" and device.type != "cuda":
        return None
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def uses_channels_last(model: nn.Module) -> bool:
    """Only 2-D convolutions have a channels-last layout to gain from."""
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class Stopwatch:
    """How a price is measured: `steps` timed steps after `warmup` untimed ones, fewer (at least
    3) when they would take over `max_seconds`, more while the timed ones have taken under
    `min_seconds`, read on `timer` (a fake one in tests). The median step, or with `mean` the
    mean: the throughput over the window, stalls included (threads that wait for a busy core
    stall some steps 100x, which a median of a few milliseconds hides)."""
    steps: int = 5
    warmup: int = 2
    max_seconds: float = 1.0
    timer: Callable[[], float] = time.perf_counter
    min_seconds: float = 0.0
    mean: bool = False


def step_seconds(model: nn.Module, opt: torch.optim.Optimizer, loss_fn: Callable[[Tensor, Tensor], Tensor],
                 batches: Iterator[tuple[Tensor, Tensor]], amp: torch.dtype | None = None,
                 watch: Stopwatch = Stopwatch()) -> float:
    """Median seconds of a training step (making its batch, forward, loss, backward, update,
    reading the loss as the loop does), timed as `watch` says. `batches` yields (x, y) on the
    device, transformed (augmented, laid out) as the loop would: that is part of the price. Timed
    from after the batch was made, a floor with 2-px crops was priced at 56-60 ms a step and
    trained at 64-67 ms (part of why, in five sessions, the final's epochs took 1.04-1.22x their price)."""
    device = next(model.parameters()).device
    model.train()
    times: list[float] = []
    steps, warmup, timer = watch.steps, watch.warmup, watch.timer
    total, most = warmup + steps, warmup + 100 * steps
    while len(times) < total or (sum(times[warmup:]) < min(watch.min_seconds, watch.max_seconds)
                                 and len(times) < most):
        sync(device)
        t0 = timer()
        x, y = next(batches)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()
        sync(device)
        times.append(timer() - t0)
        if len(times) == warmup + 1 and times[-1] * steps > watch.max_seconds:
            total = warmup + max(3, int(watch.max_seconds / max(times[-1], 1e-9)))
    return (statistics.mean if watch.mean else statistics.median)(times[warmup:])


@dataclass(frozen=True)
class Speed:
    """The resolved settings, and what each variant measured (examples per second)."""
    precision: str
    channels_last: bool
    measured: dict[str, float] = field(default_factory=dict)
    why: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def name(self) -> str:
        return variant_name(self.precision, self.channels_last)


def variant_name(precision: str, channels_last: bool) -> str:
    return precision + (" channels-last" if channels_last else "")


def candidates(cfg: Config, model: nn.Module, device: torch.device) -> list[tuple[str, bool]]:
    """The (precision, channels_last) pairs the config leaves open on this device, fp32 first."""
    t = cfg.train
    if t.precision == "auto":
        precisions = ["fp32"] + (["bf16"] if native_bf16(device) else
                                 ["fp16"] if device.type == "cuda" else [])
    else:
        precisions = [t.precision]  # as set (one this device cannot run is the Trainer's to say)
    layouts = [False, True] if t.channels_last == "auto" and uses_channels_last(model) else \
        [t.channels_last is True and uses_channels_last(model)]
    return [(p, c) for p in precisions for c in layouts]


def plan_speed(cfg: Config, model: nn.Module, data: Data, device: torch.device, watch: Stopwatch = Stopwatch(),
               total_steps: int | None = None, budget: float | None = None) -> Speed:
    """Time each open variant on a copy of `model` (the random streams restored after), fp32
    first; when timing the others would cost over TIMING_SHARE of the run's expected time
    (`total_steps` at the fp32 pace, at most `budget` seconds), the run stays fp32. Returns the
    fastest variant, fp32 unless another is over NOISE faster."""
    options = candidates(cfg, model, device)
    if len(options) == 1:
        return Speed(*options[0], {}, "as configured")
    if budget is not None and budget < MIN_RUN_SECONDS:
        return Speed(*options[0], {}, f"a run of under {MIN_RUN_SECONDS:.0f}s is not worth timing the variants for")
    rng = ckpt.rng_state()
    try:
        measured = _measure(cfg, model, data, device, options, watch, total_steps, budget)
    finally:
        ckpt.set_rng_state(rng)
    base = measured[variant_name(*options[0])]
    if len(measured) == 1:
        return Speed(*options[0], measured, "the run is too short to be worth timing the other variants "
                                            f"(over {TIMING_SHARE:.0%} of its time)")
    best = max(options, key=lambda o: measured.get(variant_name(*o), 0.0))
    rate = measured[variant_name(*best)]
    if rate < (1 + NOISE) * base:
        best, rate = options[0], base
    table = ", ".join(f"{k} {v:,.0f}" for k, v in measured.items())
    return Speed(*best, measured, f"{variant_name(*best)}: {rate / base:.2f}x {variant_name(*options[0])} "
                                  f"(examples/s here: {table})")


def _measure(cfg: Config, model: nn.Module, data: Data, device: torch.device, options: list[tuple[str, bool]],
             watch: Stopwatch, total_steps: int | None, budget: float | None) -> dict[str, float]:
    bs = min(cfg.train.batch_size, len(data.train))
    x_all, y_all = data.train.x[:8 * bs].to(device), data.train.y[:8 * bs].to(device)
    loss_fn = make_loss(cfg.train.loss, cfg.regularize.label_smoothing)
    measured: dict[str, float] = {}
    for precision, channels_last in options:
        net = copy.deepcopy(model).to(device)
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
        opt = build_optimizer(cfg.optim, net)

        def batches() -> Iterator[tuple[Tensor, Tensor]]:
            i = 0
            while True:
                j = (i * bs) % max(len(x_all) - bs + 1, 1)
                x = x_all[j:j + bs]
                yield (x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x,
                       y_all[j:j + bs])
                i += 1

        seconds = step_seconds(net, opt, loss_fn, batches(), autocast_dtype(precision, device), watch)
        measured[variant_name(precision, channels_last)] = bs / seconds
        if len(measured) == 1:  # fp32's pace prices the run and the timing of the others
            run = min(total_steps * seconds if total_steps is not None else float("inf"), budget or float("inf"))
            if run < MIN_RUN_SECONDS or (len(options) - 1) * (watch.steps + watch.warmup) * seconds > \
                    TIMING_SHARE * run:
                break
    return measured


def resolve(cfg: Config, speed: Speed) -> Config:
    """cfg with the measured settings in place of 'auto' (what the run directory records)."""
    return cfg.replace(**{"train.precision": speed.precision, "train.channels_last": speed.channels_last})
