"""Hyperparameter search on Optuna (CS231n lecture 6, "Hyperparameter Optimization").

The lectures: random search beats grid search (Bergstra & Bengio 2012); sample LR and
regularization in log space; start wide, train briefly, narrow around what worked and
train longer ("coarse to fine"). Strategies:

  random          Optuna's RandomSampler over the whole space
  grid            Optuna's GridSampler (continuous ranges become evenly spaced points)
  tpe             Optuna's TPESampler (Bergstra et al. 2011); its default pruner is Hyperband
  coarse-to-fine  stages of random search, each on ranges narrowed around the previous
                  stage's best trials (widened where the best sat at an edge), each
                  training longer

Bad trials stop early: a non-finite loss or a loss above 3x the initial one ends a trial at
once; successive halving (ASHA, the default), median or Hyperband pruning (tpe's default,
as Optuna's benchmarks pair them) acts on the validation metric at every evaluation. Every trial is an ordinary coach run directory inside the sweep.

Storage: a journal file in the sweep directory (several processes on one machine), or a
PostgreSQL URL (many machines) with heartbeats, where trials of a dead worker are failed
and retried with the same parameters. A restarted search continues where it was: the
trial count is of finished trials, so none is lost and none runs twice.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
import os
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import optuna
import torch
from optuna.trial import TrialState

from coach.config import Config, make_config, save_config
from coach.data import load_data
from coach.errors import UserError
from coach.fmt import params, seconds, sig
from coach.nn.maker import BUILDER
from coach.sweep.space import Dim, grid_points, narrow, parse_space
from coach.train import Callback, fit
from coach.train.job import Job, prepare
from coach.train.loop import interrupt_flag
from coach.train.run import Kept, TempDir, write_json

STRATEGIES = ("random", "grid", "tpe", "coarse-to-fine")
PRUNERS = ("asha", "median", "hyperband", "none")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)

optuna.logging.set_verbosity(optuna.logging.WARNING)
# heartbeats and their retry callback are marked experimental in Optuna; they are what we want
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


# ----------------------------------------------------------------------- storage
def open_storage(url: str | None, sweep_dir: Path) -> optuna.storages.BaseStorage:
    if url is None or url.startswith("journal:") or url.endswith(".log"):
        path = Path(url.removeprefix("journal:")) if url else sweep_dir / "journal.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        backend = optuna.storages.journal.JournalFileBackend(str(path))
        return optuna.storages.JournalStorage(backend)
    if url.startswith("postgresql"):
        try:
            import psycopg  # noqa: F401  (SQLAlchemy's PostgreSQL driver)
        except ImportError:
            raise UserError(f"--storage {url}: PostgreSQL storage needs the postgres extra: "
                            "pip install 'coach[postgres]'") from None
    try:
        return optuna.storages.RDBStorage(
            url, heartbeat_interval=2, grace_period=8,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3),
            engine_kwargs={"pool_pre_ping": True, "connect_args": {"connect_timeout": 5}}
            if url.startswith("postgresql") else None)
    except Exception as e:  # sqlalchemy/psycopg2 errors for unreachable or wrong URLs
        raise UserError(f"--storage {url}: cannot open the storage ({e.__class__.__name__}: "
                        f"{str(e).splitlines()[0]})") from None


# ----------------------------------------------------------------------- a trial
class SearchInterrupted(Exception):
    """Ctrl-C or SIGTERM: the running trial (if any) was stopped at a step boundary and
    stored as failed, so it is neither counted nor picked as best; a restart runs it again."""

    def __init__(self, trial: int | None = None):
        super().__init__(f"trial {trial} was cut short" if trial is not None else "stopped between trials")
        self.trial = trial


class _QuietInterruption(logging.Filter):
    """Optuna logs a failed trial's traceback; a trial cut by Ctrl-C (once: SearchInterrupted, twice:
    KeyboardInterrupt) is not a failure to report (the search prints how it resumes, or `coach:
    aborted`), so its two log lines are dropped."""

    def __init__(self) -> None:
        super().__init__()
        self.after_cut = False

    def filter(self, record: logging.LogRecord) -> bool:
        cut = "SearchInterrupted" in record.getMessage() or "KeyboardInterrupt" in record.getMessage() or (
            record.exc_info is not None and isinstance(record.exc_info[1], (SearchInterrupted, KeyboardInterrupt)))
        if cut or (self.after_cut and "failed with value None" in record.getMessage()):
            self.after_cut = cut
            return False
        self.after_cut = False
        return True


logging.getLogger("optuna.study._optimize").addFilter(_QuietInterruption())


class TrialGuard(Callback):
    """Stops a trial at once on divergence; reports the validation metric for pruning."""

    def __init__(self, trial: optuna.Trial, monitor: str, report: bool = True):
        # report=False without a pruner: each report is a locked write to the shared storage,
        # and on a journal file two workers contending for its lock back off for up to a second
        self.trial, self.monitor, self.report = trial, monitor, report
        self.first: float | None = None
        self.evals = 0

    def on_step_end(self, t: Any, logs: dict[str, Any]) -> None:
        if self.first is None:
            self.first = logs["loss"]
        elif not math.isfinite(logs["loss"]) or logs["loss"] > 3 * self.first:
            t.stop_reason = f"diverged: the loss rose to {logs['loss']:.3g}, over 3x its initial {self.first:.3g}"

    def on_eval_end(self, t: Any, logs: dict[str, Any]) -> None:
        self.evals += 1
        if not self.report:
            return
        self.trial.report(logs[self.monitor], step=self.evals)
        if self.trial.should_prune():
            t.stop_reason = "pruned"


def suggest(trial: optuna.Trial, d: Dim) -> Any:
    if d.kind in ("loguniform", "uniform"):
        return trial.suggest_float(d.key, d.low, d.high, log=d.log)
    if d.kind in ("int", "logint"):
        return trial.suggest_int(d.key, int(d.low), int(d.high), log=d.log)
    return trial.suggest_categorical(d.key, list(d.values))


def dims_from_attrs(attrs: dict[str, Any]) -> list[Dim]:
    return [Dim(d["key"], d["kind"], d["low"], d["high"], tuple(d["values"])) for d in attrs["space"]]


def dims_to_attrs(dims: list[Dim]) -> list[dict[str, Any]]:
    return [{"key": d.key, "kind": d.kind, "low": d.low, "high": d.high, "values": list(d.values)} for d in dims]


def make_objective(study: optuna.Study, sweep_dir: Path, job: Job | None = None):  # noqa: ANN201
    """job: what the caller prepared (data held in memory, which every trial trains on; the user's
    model); None: the study's own config and coach's models (a worker process)."""
    attrs = study.user_attrs
    base = make_config(attrs["config"])
    dims = dims_from_attrs(attrs)
    maker = job.maker if job is not None else BUILDER
    shared_data = job.data if job is not None and job.data is not None else \
        None if any(d.key.startswith("data.") for d in dims) else load_data(base.data)

    def objective(trial: optuna.Trial) -> float:
        params = {d.key: suggest(trial, d) for d in dims}
        cfg = base.replace(**params, **{"train.epochs": attrs["epochs"], "train.progress": False,
                                        "train.max_rollbacks": 0, "train.max_nonfinite": 1})
        deadline = study.user_attrs.get("deadline")
        if deadline:  # a budgeted search: no trial runs past the end of the budget
            cfg = cfg.replace(**{"train.time_budget": max(deadline - time.time(), 5.0)})
        run_dir = sweep_dir / "trials" / f"{study.study_name}-{trial.number:04d}"
        trial.set_user_attr("run_dir", str(run_dir))
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        data = shared_data if shared_data is not None else load_data(cfg.data)
        guard = TrialGuard(trial, cfg.train.monitor, report=attrs["pruner"] != "none")
        run = fit(cfg, run_dir=run_dir, data=data, callbacks=[guard], model=maker)
        s = run.summary
        trial.set_user_attr("steps", s["steps"])
        if s["status"] == "interrupted":  # a cut trial's value is not its value: fail it, run it again
            trial.set_user_attr("status", "interrupted")
            raise SearchInterrupted(trial.number)
        trial.set_user_attr("status", "diverged" if (s["stop_reason"] or "").startswith("diverged") else
                            "pruned" if s["stop_reason"] == "pruned" else s["status"])
        if s["stop_reason"] == "pruned":
            raise optuna.TrialPruned()
        if trial.user_attrs["status"] == "diverged":
            return 0.0 if cfg.train.mode == "max" else float("inf")
        value = s["best"]["value"]
        return float(value if value is not None else s["final"][cfg.train.monitor])

    return objective


def make_sampler(strategy: str, dims: list[Dim], seed: int, grid_per_dim: int) -> optuna.samplers.BaseSampler:
    if strategy == "grid":
        return optuna.samplers.GridSampler({d.key: grid_points(d, grid_per_dim) for d in dims}, seed=seed)
    if strategy == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=5)
    return optuna.samplers.RandomSampler(seed=seed)


def default_pruner(strategy: str) -> str:
    return "hyperband" if strategy == "tpe" else "asha"


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    return {"asha": lambda: optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3),
            "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
            "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=1, reduction_factor=3),
            "none": lambda: optuna.pruners.NopPruner()}[name]()


def recover_dead_trials(study: optuna.Study) -> int:
    """Journal storage has no heartbeat: trials left RUNNING by a dead process on this
    machine are failed and queued again with the same parameters."""
    host, n = socket.gethostname(), 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = t.user_attrs.get("pid")
        if t.user_attrs.get("host") != host or pid is None or _alive(pid):
            continue
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
        n += 1
    return n + requeue_interrupted(study)


def requeue_interrupted(study: optuna.Study) -> int:
    """Trials cut short by Ctrl-C are queued again with the same parameters (once each)."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    cut = [t for t in trials if t.state == TrialState.FAIL and t.user_attrs.get("status") == "interrupted"
           and t.number not in retried]
    for t in cut:
        study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
    return len(cut)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process starts no trial before recovering: a match is a reused pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped) is dead too
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def trial_line(t: optuna.trial.FrozenTrial, monitor: str, target: int) -> str:
    """One line per finished trial, for the console and logs."""
    took = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start \
        else float("nan")
    status = t.user_attrs.get("status") or t.state.name.lower()
    value = t.value if t.value is not None else \
        t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None
    shown = f"{monitor} {sig(value)}" if value is not None else "no value"
    return (f"trial {t.number + 1} (of {target})  {params(t.params)}  {shown}  {status}, "
            f"{t.user_attrs.get('steps', 0)} steps, {seconds(took)}")


def work(storage_url: str | None, study_name: str, sweep_dir: Path, worker: int = 0,
         timeout: float | None = None, say: Callable[[str], None] | None = None, job: Job | None = None) -> None:
    """One worker: run trials of the study until it has its number of finished trials.
    say: where a line per finished trial goes (None: nowhere)."""
    storage = open_storage(storage_url, sweep_dir)
    try:
        probe = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        raise UserError(f"--study {study_name}: no such study in the storage") from None
    attrs = probe.user_attrs
    dims = dims_from_attrs(attrs)
    # workers sharing a study must not draw the same random sequence: the seed depends on
    # the worker and on how many trials exist already (so a restart does not repeat either)
    seed = attrs["seed"] if attrs["strategy"] == "grid" else \
        attrs["seed"] * 1000 + worker * 7919 + len(probe.get_trials(deepcopy=False))
    sampler = make_sampler(attrs["strategy"], dims, seed, attrs["grid_per_dim"])
    study = optuna.load_study(study_name=study_name, storage=storage, sampler=sampler,
                              pruner=make_pruner(attrs["pruner"]))
    objective = make_objective(study, sweep_dir, job)
    heartbeat = isinstance(storage, optuna.storages.RDBStorage)
    start = time.time()
    with interrupt_flag() as interrupted:
        while timeout is None or time.time() - start < timeout:
            if interrupted.is_set():
                raise SearchInterrupted()
            if not _one_more_trial(study, objective, heartbeat, attrs["trials"], say,
                                   attrs["config"]["train"]["monitor"]):
                return


def _one_more_trial(study: optuna.Study, objective: Any, heartbeat: bool, target: int,
                    say: Callable[[str], None] | None, monitor: str) -> bool:
    """Run one trial if the study needs one; False once it has its number of finished trials."""
    # before each trial: fail trials of dead workers (they are queued again), then count
    if heartbeat:
        optuna.storages.fail_stale_trials(study)
        requeue_interrupted(study)
    else:
        recover_dead_trials(study)
    states = [t.state for t in study.get_trials(deepcopy=False)]
    finished = sum(s in FINISHED for s in states)
    running, waiting = states.count(TrialState.RUNNING), states.count(TrialState.WAITING)
    if finished >= target:
        return False
    if finished + running >= target and not waiting:
        time.sleep(0.2)  # the rest is running elsewhere; stay to retry it if its worker dies
        return True
    study.optimize(objective, n_trials=1, gc_after_trial=False, catch=(RuntimeError, ValueError),
                   callbacks=[lambda st, t: say(trial_line(t, monitor, target))] if say else None)
    return True


def run_workers(storage_url: str | None, study_name: str, sweep_dir: Path, workers: int,
                timeout: float | None, say: Callable[[str], None] | None = None, job: Job | None = None) -> None:
    """N workers on this machine: this process is worker 0, the others are child processes.

    The cores are shared out (each worker gets cores // N torch threads): small models gain
    little from a second thread, so N one-thread workers run ~N times the trials per hour.
    Worker 0 in this process saves one start-up (importing torch, loading the data)."""
    if workers <= 1:
        work(storage_url, study_name, sweep_dir, 0, timeout, say, job)
        return
    threads = max(1, (os.cpu_count() or 2) // workers)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    url = storage_url or f"journal:{sweep_dir / 'journal.log'}"
    procs = [subprocess.Popen([sys.executable, "-m", "coach", "search", "--worker", "--storage", url,
                               "--study", study_name, "--out", str(sweep_dir), "--worker-index", str(i)]
                              + (["--budget", f"{timeout:.3f}s"] if timeout else []) + ([] if say else ["--quiet"]),
                              env=env)
             for i in range(1, workers)]
    own_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        work(storage_url, study_name, sweep_dir, 0, timeout, say)
    except BaseException:
        for p in procs:  # an interrupted search takes its workers down with it; a restart resumes
            p.terminate()
        raise
    finally:
        torch.set_num_threads(own_threads)
    codes = [p.wait() for p in procs]
    if any(codes):
        raise UserError(f"search workers exited with {codes}")


# ------------------------------------------------------------------ a whole search
@dataclass
class Sweep:
    """One search as it runs: the prepared job, the folder and storage its studies live in, the
    workers that run their trials and where they report."""
    job: Job
    folder: Path
    storage: str | None
    workers: int
    pruner: str
    grid_per_dim: int
    say: Callable[[str], None] | None

    def __post_init__(self) -> None:
        self.store = open_storage(self.storage, self.folder)

    def stage(self, name: str, dims: list[Dim], strategy: str, trials: int, epochs: int) -> optuna.Study:
        """The study of one stage, created with its space and settings (or continued as it was)."""
        cfg = self.job.cfg
        direction = "maximize" if cfg.train.mode == "max" else "minimize"
        study = optuna.create_study(study_name=name, storage=self.store, direction=direction, load_if_exists=True)
        if "config" not in study.user_attrs:
            for k, v in {"config": cfg.to_dict(), "space": dims_to_attrs(dims), "strategy": strategy,
                         "epochs": epochs, "pruner": self.pruner, "seed": cfg.seed,
                         "grid_per_dim": self.grid_per_dim}.items():
                study.set_user_attr(k, v)
        if study.user_attrs.get("trials") != trials:  # a restart may ask for more (or fewer) trials
            study.set_user_attr("trials", trials)
        return study

    def run(self, study: optuna.Study, seconds: float | None) -> None:
        if seconds is not None:
            study.set_user_attr("deadline", time.time() + seconds)
        run_workers(self.storage, study.study_name, self.folder, self.workers, seconds, self.say, self.job)

    def single(self, name: str, dims: list[Dim], strategy: str, trials: int,
               budget: float | None) -> list[dict[str, Any]]:
        """One study: random, grid (every point, up to `trials`) or TPE."""
        epochs = self.job.cfg.train.epochs
        if strategy == "grid":
            trials = min(trials, math.prod(len(grid_points(d, self.grid_per_dim)) for d in dims))
        self.run(self.stage(name, dims, strategy, trials, epochs), budget)
        return [{"study": name, "space": {d.key: d.describe() for d in dims}, "epochs": epochs, "trials": trials,
                 "notes": []}]

    def coarse_to_fine(self, name: str, dims: list[Dim], trials: int, stages: int,
                       budget: float | None) -> list[dict[str, Any]]:
        """Stages of random search, each longer than the last, each range narrowed to the best
        quarter of the stage before (coach.sweep.space.narrow)."""
        cfg, start, info_all = self.job.cfg, time.time(), []
        per_stage = [trials // stages + (1 if i < trials % stages else 0) for i in range(stages)]
        current = dims
        for k in range(stages):
            stage_name = f"{name}-stage{k + 1}"
            epochs = stage_epochs(cfg.train.epochs, stages)[k]
            st = self.stage(stage_name, current, "random", per_stage[k], epochs)
            current = dims_from_attrs(st.user_attrs)  # a resumed stage keeps the ranges it started with
            left = None if budget is None else max(budget - (time.time() - start), 1.0) * per_stage[k] / max(
                sum(per_stage[k:]), 1)
            self.run(st, left)
            info = {"study": stage_name, "space": {d.key: d.describe() for d in current}, "epochs": epochs,
                    "trials": per_stage[k], "notes": []}
            done = st.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if done and k + 1 < stages:
                current = self._narrowed(current, done, info)
            info_all.append(info)
        return info_all

    def _narrowed(self, dims: list[Dim], done: list[Any], info: dict[str, Any]) -> list[Dim]:
        ranked = sorted(done, key=lambda t: t.value, reverse=self.job.cfg.train.mode == "max")
        top = ranked[: max(2, len(ranked) // 4)]
        narrowed = []
        for d in dims:
            nd, note = narrow(d, [t.params[d.key] for t in top if d.key in t.params], ranked[0].params.get(d.key, d.low))
            narrowed.append(nd)
            if note:
                info["notes"].append(note)
        return narrowed


def search(cfg: Config, strategy: str = "random", trials: int = 20, sweep_dir: str | Path | None = None,
           storage: str | None = None, workers: int = 1, budget: float | None = None, stages: int = 3,
           pruner: str | None = None, grid_per_dim: int = 3, study: str | None = None,
           say: Callable[[str], None] | None = None, data: Any = None, model: Any = None) -> Kept:
    """Run (or continue) a search; returns the sweep summary (also written to sweep.json).
    data: data held in memory ((x, y) arrays or tensors, a dict, a Dataset or DataLoader:
    coach.data.memory), for every trial; model: your own nn.Module or a function of
    hyperparameters that builds one (coach.nn.own: a factory's width, depth, dropout... can be
    searched). Both live in this process, so they need workers=1.
    pruner: asha, median, hyperband or none; None picks the strategy's default (default_pruner).
    say: where a line per finished trial goes (the CLI passes print). Ctrl-C or SIGTERM raises
    SearchInterrupted after the running trial is stored as failed; running it again continues."""
    if strategy not in STRATEGIES:
        raise UserError(f"--strategy: {strategy!r}; allowed: {', '.join(STRATEGIES)}")
    pruner = pruner or default_pruner(strategy)
    if pruner not in PRUNERS:
        raise UserError(f"--pruner: {pruner!r}; allowed: {', '.join(PRUNERS)}")
    job = prepare(cfg, data, model, load=False)
    cfg = job.cfg
    dims = searchable(job, workers)
    # data in memory and no folder asked for: the sweep lives in a temporary folder (summary.save keeps it)
    keep = TempDir("coach-sweep-") if sweep_dir is None and job.data is not None else None
    folder = Path(sweep_dir) if sweep_dir else keep.path if keep else \
        Path("sweeps") / time.strftime(f"%Y%m%d-%H%M%S-{cfg.data.name}")
    folder.mkdir(parents=True, exist_ok=True)
    save_config(cfg, folder / "config.yaml")
    sweep, start = Sweep(job, folder, storage, workers, pruner, grid_per_dim, say), time.time()
    stage_info = sweep.coarse_to_fine(study or "coach", dims, trials, stages, budget) \
        if strategy == "coarse-to-fine" else sweep.single(study or "coach", dims, strategy, trials, budget)
    return Kept(summarize(sweep.store, folder, cfg, strategy, stage_info, time.time() - start, pruner), folder, keep)


def searchable(job: Job, workers: int) -> list[Dim]:
    """The space of job's search section, refused where it cannot be honoured: data or a model
    from Python with several worker processes, data.* over data in memory, a key your model
    does not take."""
    if job.held and workers > 1:
        raise UserError(f"--workers {workers}: data or a model passed from Python live in this process, so the search "
                        "runs one worker; save the data as an .npz (data.path) to spread it over processes")
    dims = parse_space(job.cfg.search, job.cfg)
    if job.data is not None and any(d.key.startswith("data.") for d in dims):
        raise UserError("search: data.* cannot be searched over data passed in memory (they are loaded once)")
    unheeded = job.maker.unheeded([d.key for d in dims])
    if unheeded:
        raise UserError(f"search: {', '.join(unheeded)}: your model does not take it (a factory with that "
                        f"parameter does: {', '.join(job.maker.searchable) or 'none taken now'})")
    return dims


def stage_epochs(epochs: int, stages: int) -> list[int]:
    """Coarse-to-fine trains short first and longer later: the epoch count halves per stage
    back from the last. Never under 2 epochs once the last stage has 4 or more: one epoch is
    mostly warm-up, and its ranking of slow learners is noise."""
    floor = 2 if epochs >= 4 else 1
    return [max(floor, epochs // 2 ** (stages - 1 - k)) for k in range(stages)]


def summarize(store: optuna.storages.BaseStorage, sweep: Path, cfg: Config, strategy: str,
              stage_info: list[dict[str, Any]], elapsed: float, pruner: str | None = None) -> dict[str, Any]:
    rows = []
    for info in stage_info:
        st = optuna.load_study(study_name=info["study"], storage=store)
        for t in st.get_trials(deepcopy=False):
            rows.append({"stage": info["study"], "number": t.number, "state": t.state.name, "value": t.value,
                         "params": t.params, "run_dir": t.user_attrs.get("run_dir"),
                         "status": t.user_attrs.get("status"), "steps": t.user_attrs.get("steps", 0),
                         "retry_of": t.user_attrs.get("retry_of")})
    complete = [r for r in rows if r["state"] == "COMPLETE" and r["value"] is not None]
    best = (max if cfg.train.mode == "max" else min)(complete, key=lambda r: r["value"]) if complete else None
    summary = {"strategy": strategy, "pruner": pruner, "stages": stage_info, "trials": rows, "best": best, "time": elapsed,
               "monitor": cfg.train.monitor, "mode": cfg.train.mode, "compute_steps": sum(r["steps"] for r in rows),
               "space": {k: str(v) for k, v in cfg.search.items()}}
    write_json(sweep / "sweep.json", summary)
    return summary

