"""The CUDA paths: mixed precision, channels-last, your own module, coach.watch, the Lightning
callback, evaluation and the autopilot on a GPU. Skipped without one (CI has none); run on a
machine with an NVIDIA GPU: pytest -m gpu."""
import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

import coach
from coach.train import Run

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

X, Y = load_digits(return_X_y=True)
X = X.reshape(-1, 1, 8, 8).astype("float32")
CFG = {"data": {"name": "digits"}, "model": {"name": "convnet", "width": 16, "depth": 2},
       "train": {"epochs": 6, "batch_size": 64, "progress": False, "device": "cuda", "monitor_every": 10}}


@pytest.mark.parametrize("precision", ["auto", "fp16", "fp32"])
def test_fit_on_cuda_in_each_precision(tmp_path, precision):
    cfg = coach.make_config(CFG).replace(**{"train.precision": precision})
    run = coach.fit(cfg, run_dir=tmp_path / "run")
    s = run.summary
    assert s["device"].startswith("cuda") and s["status"] == "completed" and not s["warnings"], s
    assert s["final"]["val_acc"] > 0.85 and s["skipped_steps"] == 0
    # the weights come back to a CPU machine: the same predictions there
    data = coach.load_data(cfg.data)
    cpu = Run.open(run.dir).load_model("final")
    from coach.evaluate import predict_proba
    on_cpu = predict_proba(cpu, data.val.x)
    on_gpu = predict_proba(cpu, data.val.x, device="cuda")
    assert (on_cpu.argmax(1) == on_gpu.argmax(1)).float().mean() > 0.99


def test_channels_last_ema_and_tensorboard_on_cuda(tmp_path):
    cfg = coach.make_config(CFG).replace(**{"train.channels_last": True, "train.ema": 0.99,
                                            "train.tensorboard": True})
    run = coach.fit(cfg, run_dir=tmp_path / "run")
    assert run.summary["final"]["val_acc"] > 0.85
    assert list(run.dir.glob("events.out.tfevents.*")) and (run.dir / "weights" / "ema.safetensors").exists()
    from coach.evaluate import evaluate_runs
    result = evaluate_runs([run.dir], tta="flip", device="cuda")
    assert {r["name"].split(" (")[1].split(")")[0] for r in result["rows"]} >= {"best weights", "EMA weights, BN recomputed"}


def test_resume_on_cuda_continues_the_run(tmp_path):
    cfg = coach.make_config(CFG).replace(**{"train.max_steps": 30})
    coach.fit(cfg, run_dir=tmp_path / "run")
    (tmp_path / "run" / "config.yaml").write_text((tmp_path / "run" / "config.yaml").read_text()
                                                  .replace("max_steps: 30", "max_steps: 60"))
    run = coach.fit(resume=tmp_path / "run")
    assert run.summary["steps"] == 60 and run.summary["device"].startswith("cuda")


def test_your_own_module_on_cuda_and_its_export(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.Flatten(),
                        nn.Linear(16 * 64, 10))
    run = coach.fit(net, (X, Y), run_dir=tmp_path / "run", epochs=5, device="cuda", progress=False)
    assert next(net.parameters()).is_cuda and run.summary["final"]["val_acc"] > 0.85
    assert Run.open(run.dir).spec["exported"] is True  # exported from a CPU copy
    again = Run.open(run.dir).predict(X[:200])
    assert (again.argmax(1) == run.predict(X[:200]).argmax(1)).mean() > 0.99
    result = coach.check(net, (X, Y), probe_steps=20, range_steps=20, overfit_steps=100)
    assert result.steps["overfit"]["train_acc"] == 1.0


def test_watch_on_a_cuda_loop():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)).cuda()
    opt = torch.optim.SGD(model.parameters(), lr=10.0, momentum=0.9)
    x, y = torch.tensor(X / 16).cuda(), torch.tensor(Y).cuda()
    with coach.watch(model, opt, every=5, num_classes=10) as w:
        for i in range(0, 1500, 50):
            loss = nn.functional.cross_entropy(model(x[i:i + 50]), y[i:i + 50])
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.step(loss)
    assert "lr_too_high" in {f.code for f in w.findings}
    assert w.monitor.records[-1]["acts"]


def test_lightning_babysitter_on_gpu(tmp_path):
    pl = pytest.importorskip("lightning.pytorch")
    from coach.integrations.lightning import Babysitter

    class Net(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, i):
            return nn.functional.cross_entropy(self(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    x = torch.tensor((X - X.mean(0)) / (X.std(0) + 1e-3))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, torch.tensor(Y)), batch_size=32)
    sitter = Babysitter(out=tmp_path / "run", every=10, say=lambda line: None)
    pl.Trainer(max_epochs=2, callbacks=[sitter], logger=False, enable_checkpointing=False, enable_progress_bar=False,
               accelerator="gpu", devices=1).fit(Net(), loader)
    assert sitter.check.steps["overfit"]["train_acc"] == 1.0 and (tmp_path / "run" / "report.html").exists()
    assert sitter.watch.monitor.records[-1]["layers"]


def test_autopilot_on_a_gpu(tmp_path):
    result = coach.autopilot("digits", budget=40, out=tmp_path / "session", quiet=True)
    assert result["test_acc"] > 0.9, result
    final = Run.open(result["model_dir"])
    assert final.summary["device"].startswith("cuda")
    assert np.isfinite(result["test_loss"])
