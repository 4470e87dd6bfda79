"""An autopilot session: its directory, its stage log and its clock.

The clock is the promise to the user: the budget runs from when the user started (the
CLI passes the process's start, so importing torch and loading data count), and every
stage asks the session how much is left before it plans.
"""
from __future__ import annotations

import json
import math
import os
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

from coach.errors import UserError
from coach.fmt import interactive, seconds
from coach.train.callbacks import Callback, epoch_line
from coach.train.run import write_json


def process_started() -> float:
    """When this process started (time.time() scale), from /proc on Linux; now elsewhere."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = float(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return time.time() - (uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return time.time()


class EpochLines(Callback):
    """The final training's progress through the session (above its bar): a line per validation,
    at most one every `every` seconds (small data validates many times a second), and the last."""

    def __init__(self, session: "Session", every: float = 10.0):
        self.session, self.every, self.last = session, every, -math.inf

    def on_eval_end(self, t: Any, logs: dict[str, Any]) -> None:
        now = time.monotonic()
        if now - self.last >= self.every or t.step >= t.total_steps:
            self.last = now
            self.session.say("  " + epoch_line(t, logs))


ORDER = ("setup", "cost", "check", "search", "curves", "final", "choose", "test")


@dataclass
class SessionState:
    """What state.json holds: what the session was started with (a resumed session keeps it),
    its clock, and each finished stage's record (its decision, why, its seconds, what it made)."""

    budget: float
    data: str | None = None  # a dataset name or a path; "arrays": data passed in memory (passed again to resume)
    data_options: dict[str, Any] = field(default_factory=dict)  # other data.* settings
    seed: int = 0
    model: str | None = None  # the user's model (passed again to resume); None: coach's recipe
    without: list[str] = field(default_factory=list)  # decisions forced off
    elapsed: float = 0.0  # seconds of the budget used when the last stage finished
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> "SessionState":
        try:
            d = json.loads(path.read_text())
            return cls(**{k: v for k, v in d.items() if k in {f.name for f in fields(cls)}})
        except (ValueError, TypeError, AttributeError) as e:
            raise UserError(f"{path}: not an autopilot session's state ({e})") from None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SessionInterrupted(Exception):
    """Ctrl-C or SIGTERM: the session stopped after saving; `--resume` continues it."""


class Session:
    """One autopilot session directory: state.json records each finished stage (with what it
    decided, why, and the seconds it used), so a resumed session skips them."""

    def __init__(self, out: Path, budget: float, started: float | None = None,
                 clock: Callable[[], float] = time.time, quiet: bool = False):
        self.out, self.budget, self.clock, self.quiet = out, budget, clock, quiet
        self.state_path = out / "state.json"
        self.state = SessionState.read(self.state_path) if self.state_path.exists() else SessionState(budget)
        # a resumed session continues the clock where the interrupted one stopped
        self.started = (started if started is not None else clock()) - self.state.elapsed
        self.stage_started = self.elapsed()
        self.interrupted: threading.Event | None = None  # set by Ctrl-C (autopilot() installs it)
        self.bar: Any = None
        self._ticking: threading.Event | None = None

    def elapsed(self) -> float:
        return self.clock() - self.started

    def left(self) -> float:
        return max(self.budget - self.elapsed(), 0.0)

    def deadline(self) -> float:
        """The end of the budget on the time.time() scale (for trainers' own clocks)."""
        return time.time() + self.left()

    def done(self, stage: str) -> dict[str, Any] | None:
        return self.state.stages.get(stage)

    def begin(self) -> None:
        self.stage_started = self.elapsed()

    def record(self, stage: str, info: dict[str, Any]) -> dict[str, Any]:
        now = self.elapsed()
        info["finished_at"] = now
        info.setdefault("seconds", now - self.stage_started)
        self.state.stages[stage] = info
        self.state.elapsed = now
        write_json(self.state_path, self.state.to_dict())
        self.say(f"{stage}: {info.get('decision', '')}")
        self.stage_started = now
        if self.interrupted is not None and self.interrupted.is_set():
            raise SessionInterrupted(f"after the {stage} stage")  # the stage is kept; the next one is not begun
        return info

    def stage(self) -> str:
        """The stage running now: the first not yet recorded."""
        return next((name for name in ORDER if name not in self.state.stages), "report")

    def say(self, line: str) -> None:
        """A progress line: above the session bar in a terminal or notebook, plain in a log."""
        if self.quiet:
            return
        text = f"[{seconds(self.elapsed()):>7} / {seconds(self.budget)}] {line}"
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def show_bar(self) -> None:
        """One bar for the whole session (elapsed of the budget, the stage, time left), redrawn
        twice a second by a daemon thread; only where a person watches (not in a log file)."""
        if self.quiet or not interactive():
            return
        from tqdm.auto import tqdm
        self.bar = tqdm(total=round(self.budget), unit="s", dynamic_ncols=True, leave=False,
                        bar_format="{desc} |{bar}| {n:.0f}/{total:.0f}s, {remaining} left")
        self._ticking = threading.Event()

        def tick() -> None:
            while self._ticking is not None and not self._ticking.wait(0.5):
                self.bar.n = min(self.elapsed(), self.budget)
                self.bar.set_description_str(f"autopilot: {self.stage()}", refresh=False)
                self.bar.refresh()

        threading.Thread(target=tick, daemon=True).start()

    def close_bar(self) -> None:
        if self._ticking is not None:
            self._ticking.set()
            self._ticking = None
        if self.bar is not None:
            self.bar.close()
            self.bar = None
