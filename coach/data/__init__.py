"""Data: sources, the train/val/test split, preprocessing and batched augmentation."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from coach.config import DataConfig
from coach.data.preprocess import Preprocessor, fit_preprocessor
from coach.data.resolve import resolved
from coach.data.sources import RawData, Source, load_raw, stratified_split

__all__ = ["Data", "Split", "load_data", "split_data", "load_raw", "Preprocessor", "fit_preprocessor", "RawData",
           "Source", "resolved"]


@dataclass
class Split:
    x: Tensor
    y: Tensor

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device: torch.device | str) -> "Split":
        return Split(self.x.to(device), self.y.to(device))


@dataclass
class Data:
    """Everything a run needs from its data: three splits and the fitted preprocessing.

    The splits hold inputs in natural units (augmentation works on those); the
    preprocessor is applied by the model itself, so the test set and `coach predict`
    see exactly what training saw.
    """

    name: str
    kind: str
    classes: list[str]
    train: Split
    val: Split
    test: Split
    preprocess: Preprocessor
    where: str

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def select_classes(raw: RawData, classes: list[int]) -> RawData:
    """Keep only `classes` (relabelled 0..k-1 in the order given)."""
    bad = [c for c in classes if not 0 <= c < len(raw.classes)]
    if bad or len(set(classes)) != len(classes):
        from coach.errors import UserError
        raise UserError(f"data.classes: {classes} must be distinct class indices in 0..{len(raw.classes) - 1}")
    lut = np.full(len(raw.classes), -1)
    lut[classes] = np.arange(len(classes))
    tr, te = lut[raw.y_train] >= 0, lut[raw.y_test] >= 0
    return RawData(raw.kind, raw.x_train[tr], lut[raw.y_train[tr]], raw.x_test[te], lut[raw.y_test[te]],
                   [raw.classes[c] for c in classes], raw.where)


def load_data(cfg: DataConfig, seed: int | None = None) -> Data:
    """Load a source, carve a stratified validation split (data.split_seed), fit preprocessing
    on the training split only. `seed` is accepted for compatibility and not used: the split
    must not depend on the run's seed."""
    cfg = resolved(cfg)
    return split_data(load_raw(cfg), cfg)


def split_data(raw: RawData, cfg: DataConfig) -> Data:
    """RawData -> Data as the config says: classes kept, the validation split, limits, and the
    preprocessing fitted on the training split."""
    if cfg.classes is not None:
        raw = select_classes(raw, cfg.classes)
    keep, held = stratified_split(raw.y_train, cfg.val_fraction, cfg.split_seed)
    if cfg.per_class is not None:
        taken = np.zeros(len(raw.classes), dtype=int)
        mask = []
        for i in keep:
            c = raw.y_train[i]
            mask.append(taken[c] < cfg.per_class)
            taken[c] += 1
        keep = keep[np.array(mask, dtype=bool)]
    if cfg.limit is not None:
        keep = keep[: cfg.limit]
    x, y = torch.from_numpy(raw.x_train), torch.from_numpy(raw.y_train)
    train = Split(x[keep].contiguous(), y[keep].contiguous())
    val = Split(x[held].contiguous(), y[held].contiguous())
    test = Split(torch.from_numpy(raw.x_test).contiguous(), torch.from_numpy(raw.y_test).contiguous())
    pre = fit_preprocessor(cfg.preprocess, train.x, cfg.pca_components, cfg.zca_epsilon)
    return Data(cfg.name, raw.kind, raw.classes, train, val, test, pre, raw.where)
