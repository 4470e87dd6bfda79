"""train.tensorboard: a run's curves and monitors as TensorBoard events, read back with the
tensorboard package's own reader (skipped without tensorboard; make test installs the extra)."""
import json

import pytest

import coach
from coach.errors import UserError

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")

CFG = {"data": {"name": "digits"}, "model": {"name": "mlp", "width": 32, "depth": 2},
       "train": {"epochs": 3, "batch_size": 64, "progress": False, "log_every": 5, "monitor_every": 10,
                 "tensorboard": True}}


def events(run_dir):
    acc = event_accumulator.EventAccumulator(str(run_dir), size_guidance={event_accumulator.SCALARS: 0,
                                                                          event_accumulator.HISTOGRAMS: 0})
    acc.Reload()
    return acc


def test_tensorboard_events_hold_the_curves_and_the_monitors(tmp_path):
    run = coach.fit(coach.make_config(CFG), run_dir=tmp_path / "run")
    acc = events(run.dir)
    tags = acc.Tags()
    metrics = [json.loads(ln) for ln in (run.dir / "metrics.jsonl").read_text().splitlines()]
    steps = [m for m in metrics if m["type"] == "step"]
    evals = [m for m in metrics if m["type"] == "eval"]
    # the same numbers as metrics.jsonl, at the same steps
    assert [(e.step, pytest.approx(e.value)) for e in acc.Scalars("train/step_loss")] == \
        [(m["step"], m["loss"]) for m in steps]
    assert [e.value for e in acc.Scalars("val/acc")] == pytest.approx([m["val_acc"] for m in evals])
    assert {"lr", "val/loss", "train/acc"} <= set(tags["scalars"])
    monitors = [json.loads(ln) for ln in (run.dir / "monitors.jsonl").read_text().splitlines()]
    sampled = [m for m in monitors if m["layers"]]
    layer = next(iter(sampled[0]["layers"]))
    assert [e.value for e in acc.Scalars(f"update_ratio/{layer}")] == \
        pytest.approx([m["layers"][layer]["update_ratio"] for m in sampled])
    # activation histograms: coach's own bins, one per sample and one at initialization
    act = next(iter(monitors[0]["acts"]))
    hists = acc.Histograms(f"activations/{act}")
    assert [h.step for h in hists] == [m["step"] for m in monitors if m["acts"]]
    assert hists[0].histogram_value.num == sum(monitors[0]["acts"][act]["hist"])
    assert list(hists[0].histogram_value.bucket)[:len(monitors[0]["acts"][act]["hist"])] == \
        monitors[0]["acts"][act]["hist"]


def test_a_resumed_run_purges_the_events_after_its_checkpoint(tmp_path):
    from coach.train import Callback
    from coach.train.tensorboard import TensorBoard

    class Crash(Callback):
        """Dies at step 35, after its events reached the disk (the writer flushes every 2 minutes)."""

        def on_step_end(self, t, logs):
            if t.step == 35:
                next(cb for cb in t.callbacks if isinstance(cb, TensorBoard)).writer.flush()
                raise RuntimeError("killed")

    cfg = coach.make_config(CFG).replace(**{"train.checkpoint_every": 20})
    with pytest.raises(RuntimeError):
        coach.fit(cfg, run_dir=tmp_path / "run", callbacks=[Crash()])
    before = [e.step for e in events(tmp_path / "run").Scalars("train/step_loss")]
    assert before[-1] == 35  # steps 25-35 were written after the checkpoint at step 20
    coach.fit(resume=tmp_path / "run")
    steps = [e.step for e in events(tmp_path / "run").Scalars("train/step_loss")]
    assert steps == sorted(set(steps)) and steps[-1] == 60  # each step once: the crashed run's 25-35 purged


def test_without_tensorboard_the_setting_says_how_to_get_it(monkeypatch, tmp_path):
    import builtins
    real = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("no tensorboard")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.raises(UserError, match="pip install 'coach\\[tensorboard\\]'"):
        coach.fit(coach.make_config(CFG), run_dir=tmp_path / "run")
