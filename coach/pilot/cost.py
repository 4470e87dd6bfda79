"""The cost model: what one training step and one validation pass of each model size cost
on this machine, measured before anything is planned.

A plan in epochs is blind to cost (a width-64 convnet costs ~10x a width-16 one per step);
the autopilot plans in seconds. Each candidate of the size ladder trains a few real steps
(forward, loss, backward, the optimizer's update, the augmentation) on real batches and
runs one validation batch; the median step after a warm-up is its price. Sizes are timed
from the smallest up and the timing stops at the first size the budget cannot afford, so
a big machine (a GPU, many cores) simply measures further up the ladder: nothing here
knows what hardware it runs on.
"""
from __future__ import annotations

import copy
import statistics
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator

import torch

from coach.data.augment import Augment
from coach.optim import build_optimizer
from coach.train.loop import eval_batch_size, pick_device
from coach.train.job import Job
from coach.train.speed import Stopwatch, autocast_dtype, step_seconds, sync, uses_channels_last
from coach.train.losses import make_loss

# widths of the plain recipe's family (conv: channels of the first stage; mlp: hidden units)
LADDERS = {"conv": (8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256), "mlp": (64, 128, 256, 512, 1024, 2048)}


@dataclass(frozen=True)
class Cost:
    width: int
    step: float  # seconds per training step at the config's batch size
    eval_example: float  # seconds per validation example (forward only, evaluation batch)
    params: int
    # seconds per example as prediction runs (coach.train.predict: on the CPU, fp32, NCHW, its
    # batches): what choosing on validation and the test cost; 0: not measured (an older session)
    predict_example: float = 0.0

    @property
    def predict(self) -> float:
        """The price of one example through a prediction pass (choose, the test)."""
        return max(self.predict_example, self.eval_example)

    def epoch(self, steps_per_epoch: int, n_val: int, evals_per_epoch: float = 1.0, ema: bool = False) -> float:
        """Seconds per epoch: the steps plus validation (twice when the EMA weights are validated too)."""
        return steps_per_epoch * self.step + evals_per_epoch * n_val * self.eval_example * (2 if ema else 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def ladder(kind: str) -> tuple[int, ...]:
    return LADDERS["mlp" if kind == "vector" else "conv"]


def time_config(job: Job, watch: Stopwatch = Stopwatch(8)) -> Cost:
    """Measure the job's model (coach's, or the user's module or factory) as the trainer runs it
    (the config's resolved precision and memory layout, its augmentation): training steps as
    `watch` says, then a few validation batches."""
    cfg, data, timer = job.cfg, job.data, watch.timer
    assert data is not None
    device = pick_device(cfg.train.device)
    torch.manual_seed(cfg.seed)
    model = job.build().to(device)
    layout = torch.channels_last if cfg.train.channels_last is True and uses_channels_last(model) else None
    if layout is not None:
        model = model.to(memory_format=layout)
    amp = autocast_dtype(cfg.train.precision, device)
    opt = build_optimizer(cfg.optim, model)
    loss_fn = make_loss(cfg.train.loss, cfg.regularize.label_smoothing)
    augment = Augment(cfg.augment, data.kind, data.train.x)
    g = torch.Generator(device).manual_seed(cfg.seed)
    bs = min(cfg.train.batch_size, len(data.train))
    x_all, y_all = data.train.x.to(device), data.train.y.to(device)

    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:  # the augmentation is part of a step's price
            idx = torch.randint(0, len(data.train), (bs,), device=device, generator=g)
            x, y = x_all[idx], y_all[idx]
            x, y = augment(x, y, g)[:2] if augment.active else (x, y)
            yield (x.contiguous(memory_format=layout) if layout is not None else x), y

    step = step_seconds(model, opt, loss_fn, batches(), amp, watch)
    model.eval()
    eb = eval_batch_size(device)
    n = min(4 * eb, max(len(data.val), 1))
    xv = (data.val.x[:n] if len(data.val) else data.train.x[:n]).to(device)
    with torch.no_grad(), torch.autocast(device.type, dtype=amp, enabled=amp is not None):
        model(xv[:eb])  # the first call at a new batch shape allocates
        sync(device)
        t0 = timer()
        for i in range(0, n, eb):  # as evaluation runs: batches of eval_batch_size
            model(xv[i:i + eb]).argmax(1).sum().item()
        sync(device)
        eval_time = timer() - t0
    return Cost(cfg.model.width, step, eval_time / len(xv), sum(p.numel() for p in model.parameters()),
                predict_seconds(model, xv.cpu(), timer))


def predict_seconds(model: torch.nn.Module, x: torch.Tensor, timer: Callable[[], float]) -> float:
    """Seconds per example as prediction runs it (coach.train.predict: the CPU, fp32, NCHW, its
    batch size), the median of three batches after a warm-up. The trainer's validation may run in
    bf16 and channels-last (or on a GPU): priced by that, a 10-minute session's choose and test took
    44 s where 28 were left after the final training (bf16 channels-last evaluates ~2.7x faster on this CPU)."""
    m = copy.deepcopy(model).to("cpu", memory_format=torch.contiguous_format).float().eval()
    xb = x[:eval_batch_size("cpu")].float().contiguous()
    times = []
    with torch.no_grad():
        m(xb)  # the first call at a new batch shape allocates
        for _ in range(3):
            t0 = timer()
            torch.softmax(m(xb).float(), dim=1).sum().item()
            times.append(timer() - t0)
    return statistics.median(times) / len(xb)


def choose_threads(job: Job, measure: Callable[[Job], Cost] | None = None,
                   watch: Stopwatch = Stopwatch(10, min_seconds=0.2, mean=True)
                   ) -> tuple[int, dict[int, float], Cost | None]:
    """The number of CPU threads that trains fastest now, and cfg's cost at it. With another
    process holding a core, torch's threads wait on each other at every operation (a 2-thread
    step measured 1.7x slower than a 1-thread one on 2 busy cores, and now and then 60x: a
    12 s session's checks took 66 s); on an idle machine more threads win on a large enough
    model. So more threads must earn their place: the count is halved unless the larger one is
    over 10% faster (looked at twice, steps are noisy); sets the winner. A small model that
    gains nothing from a second thread keeps one, and is safe when the machine gets busy
    later. Each count is timed for 0.2 s at least, as the mean step: a few milliseconds' median
    measured 2 threads faster on a busy machine, whose checks then took 25 s of a 12 s budget.
    On a GPU: unchanged, nothing timed."""
    if pick_device(job.cfg.train.device).type != "cpu":
        return torch.get_num_threads(), {}, None
    measure = measure or (lambda j: time_config(j, watch))
    n = torch.get_num_threads()
    costs: dict[int, Cost] = {}

    def step_at(k: int) -> float:
        torch.set_num_threads(k)
        c = measure(job)
        if k not in costs or c.step < costs[k].step:
            costs[k] = c
        return costs[k].step

    step_at(n)
    best = n
    while best > 1:
        k = best // 2
        step_at(k)
        if costs[best].step < 0.9 * costs[k].step:  # a second look at both before believing it
            step_at(best)
            step_at(k)
        if costs[best].step < 0.9 * costs[k].step:
            break
        best = k
    torch.set_num_threads(best)
    return best, {k: c.step for k, c in costs.items()}, costs[best]


def measure_ladder(job: Job, affordable: Callable[[Cost], bool], seconds: float, widths: tuple[int, ...] | None = None,
                   known: Cost | None = None, up: bool = True, watch: Stopwatch = Stopwatch(6)) -> list[Cost]:
    """Time the ladder's sizes, from cfg's width upwards (`up`) or downwards, starting with
    `known` (a size already timed, not timed again); stop after the first size `affordable`
    rejects going up (its cost is known, so the report can say why it was not chosen) or
    accepts going down, or when the measuring itself has used `seconds`. Sorted by width."""
    assert job.data is not None
    widths, w0 = widths or ladder(job.data.kind), job.cfg.model.width
    order = sorted(w for w in widths if w > w0) if up else sorted((w for w in widths if w < w0), reverse=True)
    start = watch.timer()
    first = known if known is not None and known.width == w0 else time_config(job, watch)
    out: list[Cost] = [first]
    for w in order:
        if watch.timer() - start > seconds or (affordable(out[-1]) != up):
            break
        out.append(time_config(job.with_config(job.cfg.replace(**{"model.width": w})), watch))
    return sorted(out, key=lambda c: c.width)
