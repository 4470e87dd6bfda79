"""TensorBoard for people who use it: a callback that writes a run's curves and monitors as
TensorBoard event files in the run directory, so `tensorboard --logdir runs` shows coach's runs
next to the others (each run folder is one run there). The offline HTML report stays the default.

    train.tensorboard: true            (or fit(..., callbacks=[TensorBoard(run_dir)]))

Written: train/step_loss and lr (every train.log_every steps), the evaluations (val/acc,
val/loss, train/acc...), and from the monitors (train.monitor_every) each weight's update/weight
ratio and gradient norm, and each layer's activation histogram on the probe batch (coach's own
bins, written as they are with add_histogram_raw). Events after a resumed run's checkpoint are
purged, as metrics.jsonl's are. Uses torch.utils.tensorboard's writer, which needs the
`tensorboard` package (an optional extra: pip install 'coach[tensorboard]').
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from coach.errors import UserError
from coach.train.callbacks import Callback, Loop
from coach.train.monitors import Monitor


def summary_writer(log_dir: Path, purge_step: int | None = None) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError("train.tensorboard needs the tensorboard package: pip install 'coach[tensorboard]' (or pip "
                        "install tensorboard); the HTML report needs nothing") from None
    return SummaryWriter(str(log_dir), purge_step=purge_step or None)


def write_monitor(writer: Any, record: dict[str, Any], step: int) -> None:
    """One monitors.jsonl record as TensorBoard scalars and histograms."""
    for name, layer in record.get("layers", {}).items():
        writer.add_scalar(f"update_ratio/{name}", layer["update_ratio"], step)
        writer.add_scalar(f"grad_norm/{name}", layer["grad_norm"], step)
    for name, act in (record.get("acts") or {}).items():
        counts, (lo, hi) = act["hist"], act["range"]
        num = sum(counts)
        if not num or not hi > lo:
            continue
        width = (hi - lo) / len(counts)
        mean, std = act["mean"], act["std"]
        writer.add_histogram_raw(f"activations/{name}", min=lo, max=hi, num=num, sum=mean * num,
                                 sum_squares=(std ** 2 + mean ** 2) * num,
                                 bucket_limits=[lo + width * (i + 1) for i in range(len(counts))],
                                 bucket_counts=list(counts), global_step=step)


class TensorBoard(Callback):
    """Writes the run to TensorBoard event files in log_dir (default: the run directory)."""

    def __init__(self, log_dir: str | Path | None = None, every: int = 20):
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.every = every
        self.writer: Any = None
        self.monitor: Any = None
        self._written = -1

    def on_train_begin(self, t: Loop) -> None:
        self.writer = summary_writer(self.log_dir or t.run_dir, purge_step=t.step)
        self.monitor = next((cb for cb in t.callbacks if isinstance(cb, Monitor)), None)
        if self.monitor is not None and self.monitor.records and self.monitor.records[-1]["step"] == 0:
            write_monitor(self.writer, self.monitor.records[-1], 0)  # the activations at initialization

    def on_step_end(self, t: Loop, logs: dict[str, Any]) -> None:
        if t.step % self.every == 0:
            self.writer.add_scalar("train/step_loss", logs["loss"], t.step)
            self.writer.add_scalar("lr", logs["lr"], t.step)
        records = self.monitor.records if self.monitor is not None else []
        if records and records[-1]["step"] == t.step and t.step != self._written:
            write_monitor(self.writer, records[-1], t.step)
            self._written = t.step

    def on_eval_end(self, t: Loop, logs: dict[str, Any]) -> None:
        for key, value in logs.items():
            if key.startswith(("val_", "train_")) and isinstance(value, (int, float)):
                split, metric = key.split("_", 1)
                self.writer.add_scalar(f"{split}/{metric}", value, t.step)

    def on_train_end(self, t: Loop, logs: dict[str, Any]) -> None:
        if self.writer is not None:
            self.writer.close()
