"""coach's Babysitter callback on a tiny LightningModule on CPU (skipped without lightning;
make test installs the extra)."""
import json

import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

pl = pytest.importorskip("lightning.pytorch")

from coach.integrations.lightning import Babysitter  # noqa: E402

X, Y = load_digits(return_X_y=True)
X = torch.tensor((X - X.mean(0)) / (X.std(0) + 1e-3), dtype=torch.float32)  # standardized per feature
Y = torch.tensor(Y)


class Digits(pl.LightningModule):
    def __init__(self, lr: float = 1e-3, hidden: int = 64):
        super().__init__()
        torch.manual_seed(0)
        self.lr = lr
        self.net = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, i):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, i):
        x, y = batch
        scores = self(x)
        self.log("val_loss", F.cross_entropy(scores, y))
        self.log("val_acc", (scores.argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


def loaders():
    train = torch.utils.data.TensorDataset(X[:1500], Y[:1500])
    val = torch.utils.data.TensorDataset(X[1500:], Y[1500:])
    return (torch.utils.data.DataLoader(train, batch_size=32, shuffle=True),
            torch.utils.data.DataLoader(val, batch_size=256))


class GradSpy(pl.Callback):
    """The first layer's gradient norm at every optimizer step, as the update will use it."""

    def __init__(self):
        self.norms = []

    def on_before_optimizer_step(self, trainer, module, optimizer):
        self.norms.append(module.net[0].weight.grad.norm().item())


def fit(module, babysitter, epochs=3, spy=None):
    trainer = pl.Trainer(max_epochs=epochs, callbacks=[babysitter] + ([spy] if spy else []), logger=False,
                         enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1)
    trainer.fit(module, *loaders())
    return trainer


def test_babysitter_checks_first_then_watches_and_writes_the_report(tmp_path):
    lines = []
    module = Digits(lr=0.05)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    sitter = Babysitter(out=tmp_path / "run", every=10, say=lines.append)
    spy = GradSpy()
    fit(module, sitter, spy=spy)
    assert sitter.check is not None and {"data", "init", "initial_loss", "gradcheck", "overfit", "lr_range"} \
        <= set(sitter.check.steps)
    assert sitter.check.steps["overfit"]["train_acc"] == 1.0
    assert not [f for f in sitter.findings if f.severity != "info"], sitter.findings
    # the checks ran on copies: training started from the module's own initial weights
    assert lines[0].startswith("coach pre-flight") and any("6. LR range test" in ln for ln in lines)
    steps = [json.loads(ln) for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert sum(m["type"] == "step" for m in steps) == 3 * 47  # every optimizer step of 3 epochs
    evals = [m for m in steps if m["type"] == "eval"]
    assert len(evals) == 3 and evals[-1]["val_acc"] > 0.9  # no sanity-check evaluation among them
    monitors = [json.loads(ln) for ln in (tmp_path / "run" / "monitors.jsonl").read_text().splitlines()]
    sampled = [m for m in monitors if m["layers"]]
    # gradients read after Lightning's closure ran backward: none of the sampled steps sees all-zero gradients
    assert sampled and all(v["grad_norm"] > 0 for m in sampled for v in m["layers"].values())
    # and they are the step's own gradients (the ones its update used), not the step before's
    assert [m["layers"]["net.0.weight"]["grad_norm"] for m in sampled] == \
        pytest.approx([spy.norms[m["step"] - 1] for m in sampled], rel=1e-5)
    page = (tmp_path / "run" / "report.html").read_text()
    assert "coach check" in page and "coach watch: Digits" in page
    assert not torch.equal(before["net.0.weight"], module.state_dict()["net.0.weight"])


def test_training_is_the_same_with_the_babysitter(tmp_path):
    """It observes: the pre-flight reads batches and seeds its copies, the monitors run forwards on a
    probe; none of it changes the weights training ends with (shuffled loader, dropout on)."""
    class Noisy(Digits):
        def __init__(self):
            super().__init__(lr=0.05)
            self.net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Dropout(0.3), nn.Linear(64, 10))

    weights = []
    for sitter in (None, Babysitter(out=tmp_path / "run", every=5, say=lambda line: None)):
        pl.seed_everything(0)
        module = Noisy()
        trainer = pl.Trainer(max_epochs=2, callbacks=[sitter] if sitter else [], logger=False,
                             enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                             accelerator="cpu", devices=1)
        trainer.fit(module, *loaders())
        weights.append(module.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_babysitter_finds_a_learning_rate_far_too_high(tmp_path):
    lines = []
    sitter = Babysitter(every=10, say=lines.append)
    fit(Digits(lr=30.0), sitter, epochs=1)
    assert "lr_too_high" in {f.code for f in sitter.check.findings if f.severity == "error"}
    assert "lr_too_high" in {f.code for f in sitter.watch.findings}  # the curves say it too
    assert any("lr_too_high" in ln for ln in lines)


def test_babysitter_without_preflight_on_batches_it_cannot_read(tmp_path):
    class Dicts(Digits):
        def training_step(self, batch, i):
            return super().training_step((batch["x"], batch["y"]), i)

    train = torch.utils.data.DataLoader([{"x": X[i], "y": Y[i]} for i in range(320)], batch_size=32)
    sitter = Babysitter(preflight=False, every=5, say=lambda line: None)
    trainer = pl.Trainer(max_epochs=1, callbacks=[sitter], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    trainer.fit(Dicts(), train)
    assert sitter.check is None and sitter.watch.steps == 10
    assert sitter.watch.monitor is not None  # its probe: the first input the module's forward saw
    with pytest.raises(Exception, match="preflight=False"):  # the checks need (inputs, labels): said, not guessed
        pl.Trainer(max_epochs=1, callbacks=[Babysitter(say=lambda line: None)], logger=False,
                   enable_checkpointing=False, enable_progress_bar=False, accelerator="cpu").fit(Dicts(), train)


def test_the_readme_lightning_example_runs(tmp_path):
    import re
    import subprocess
    import sys
    from pathlib import Path
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = re.search(r"<!-- example: lightning .*?-->\n```python\n(.*?)```", readme, re.S).group(1)
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.splitlines()[-1].startswith("[") and "coach pre-flight" in p.stderr
    assert (tmp_path / "runs" / "lightning" / "report.html").exists()
