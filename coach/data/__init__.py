"""Data: sources, the train/val/test split, preprocessing and batched augmentation."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from coach.config import DataConfig
from coach.data.preprocess import Preprocessor, fit_preprocessor
from coach.data.sources import RawData, Source, load_raw, stratified_split

__all__ = ["Data", "Split", "load_data", "load_raw", "Preprocessor", "fit_preprocessor", "RawData", "Source"]


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


def load_data(cfg: DataConfig, seed: int) -> Data:
    """Load a source, carve a seeded stratified validation split, fit preprocessing on train."""
    raw = load_raw(cfg)
    keep, held = stratified_split(raw.y_train, cfg.val_fraction, seed)
    if cfg.limit is not None:
        keep = keep[: cfg.limit]
    x, y = torch.from_numpy(raw.x_train), torch.from_numpy(raw.y_train)
    train = Split(x[keep].contiguous(), y[keep].contiguous())
    val = Split(x[held].contiguous(), y[held].contiguous())
    test = Split(torch.from_numpy(raw.x_test).contiguous(), torch.from_numpy(raw.y_test).contiguous())
    pre = fit_preprocessor(cfg.preprocess, train.x, cfg.pca_components, cfg.zca_epsilon)
    return Data(cfg.name, raw.kind, raw.classes, train, val, test, pre, raw.where)
