"""Step 1: data sanity: shapes, class balance, statistics after preprocessing."""
from __future__ import annotations

import torch

from coach.babysit.checks.result import CheckResult
from coach.babysit.findings import Finding
from coach.data import Data
from coach.nn.models import CoachModel


def check_data(data: Data, model: CoachModel, out: CheckResult) -> None:
    x = data.train.x[:2000]
    with torch.no_grad():
        pre = model.preprocess(x).float()
    flat = pre.transpose(0, 1).reshape(pre.shape[1], -1) if pre.dim() > 2 else pre.T
    means, stds = flat.mean(1), flat.std(1)
    overall_std = pre.std().item()
    counts = torch.bincount(data.train.y, minlength=data.num_classes)
    out.steps["data"] = {"input_shape": list(data.input_shape), "kind": data.kind, "classes": data.num_classes,
                         "train": len(data.train), "val": len(data.val), "test": len(data.test),
                         "class_counts": counts.tolist(), "mean": pre.mean().item(), "std": overall_std,
                         "max_abs_channel_mean": means.abs().max().item(), "preprocess": data.preprocess.mode}
    off_centre = means.abs().max().item() > 0.5 * max(overall_std, 1e-12)
    off_scale = not 0.1 <= overall_std <= 10
    if off_centre or off_scale:
        what = " and ".join(w for w, bad in (("not zero-centred", off_centre), ("not unit-scaled", off_scale)) if bad)
        out.findings.append(Finding(
            "data_not_normalized", "warning",
            f"after preprocessing ({data.preprocess.mode}) the inputs are {what}: mean {pre.mean().item():.3g}, "
            f"largest channel mean {means.abs().max().item():.3g}, std {overall_std:.3g}",
            "zero-centre and scale the inputs: data.preprocess=standardize (per-channel mean/std, as ResNet) "
            "or channel_mean (VGG)", {"mean": pre.mean().item(), "std": overall_std,
                                      "channel_means": means.tolist(), "channel_stds": stds.tolist()}))
    if counts.min().item() * 5 < counts.max().item():
        out.findings.append(Finding(
            "class_imbalance", "info",
            f"the largest class has {counts.max().item()} training examples, the smallest {counts.min().item()}",
            "accuracy can hide poor minority classes; consider class-balanced sampling or reporting per-class "
            "accuracy", {"class_counts": counts.tolist()}))
