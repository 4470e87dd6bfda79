"""Which source reads the data, decided in this one place: data.name as given, else the source
that reads data.path (an .npz, a CIFAR-10 folder, a folder of IDX files, class folders), else
Fashion-MNIST. The config checks values only; whether the disk agrees is decided here, when the
data are about to be read (coach.data.sources.load_raw) or a job is prepared (coach.train.job).
"""
from __future__ import annotations

from pathlib import Path

from coach.config import DataConfig
from coach.data.idx import IDX_FILES, idx_file_in
from coach.errors import UserError

DEFAULT_SOURCE = "fashion-mnist"
FILE_SOURCES = ("npz",)  # the sources that read a file; the others with a path read a folder
NEEDS_PATH = ("npz", "image-folder")  # the sources that read nothing without data.path


def resolved(cfg: DataConfig) -> DataConfig:
    """The data section with its source decided: data.name as given, else the
    source that reads data.path, else Fashion-MNIST. A name and a path that disagree (a folder
    for the npz source, a file for a folder source) are refused, naming both."""
    if cfg.name is None:
        return cfg.model_copy(update={"name": source_of_path(Path(cfg.path)) if cfg.path else DEFAULT_SOURCE})
    if cfg.path and cfg.name != "arrays":
        path = Path(cfg.path)
        reads_file = cfg.name in FILE_SOURCES
        if path.exists() and (path.is_file() or path.suffix == ".npz") != reads_file:
            what = "a file" if path.is_file() else "a folder"
            raise UserError(f"data.path={path} is {what} but data.name={cfg.name}: "
                            + ("npz reads an .npz file" if reads_file else f"{cfg.name} reads a folder")
                            + "; leave data.name out and the path decides")
    return cfg


def source_of_path(path: Path) -> str:
    """The data source that reads path: an .npz file, a CIFAR-10 folder, a folder of IDX
    files (MNIST or Fashion-MNIST, which the files alone cannot tell apart) or class folders."""
    if path.suffix == ".npz":
        return "npz"
    if not path.exists():
        raise UserError(f"data.path={path} does not exist")
    if path.is_file():
        raise UserError(f"data.path={path}: a file coach cannot tell the source of; an .npz (x, y) is read "
                        "directly, images go in a folder of class folders")
    if (path / "cifar-10-batches-py").is_dir() or (path / "data_batch_1").exists():
        return "cifar10"
    first = IDX_FILES[0]
    idx = [n for n in ("mnist", "fashion-mnist") if idx_file_in(path / n, first)]
    if len(idx) == 1:
        return idx[0]
    if idx or idx_file_in(path, first):
        raise UserError(f"data.path={path} holds IDX files, which MNIST and Fashion-MNIST share: "
                        "set data.name=mnist or data.name=fashion-mnist")
    return "image-folder"
