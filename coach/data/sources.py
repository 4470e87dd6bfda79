"""Data sources: where examples come from, checked before anything trains on them.

Each source returns a `RawData` (numpy arrays, float32 inputs in natural units: images
in [0, 1], channels first). Built-in sources ship their own test split; for those that
do not (digits, an image folder without train/ and test/, an npz without x_test) a
test split is carved with a fixed seed, so it is the same for every run.

Every problem a user's files can have (corrupt or truncated file, a non-image in an
image folder, labels out of range, an empty class, NaN features, x and y of
different lengths) raises a `UserError` naming the file and the problem.
"""
from __future__ import annotations

import io
import os
import pickle
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

import numpy as np

from coach.config import DATASETS, DataConfig
from coach.atomic import atomic_write_bytes
from coach.data.download import cache_dir, download
from coach.data.idx import IDX_FILES, idx_file_in, read_idx
from coach.data.resolve import resolved
from coach.errors import UserError

Kind = Literal["image", "signal", "vector"]
TEST_SPLIT_SEED = 20161  # fixed: a carved test split never depends on the run's seed


@dataclass
class RawData:
    kind: Kind
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[str]
    where: str

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


@dataclass(frozen=True)
class Source:
    """A named data source as `coach datasets` lists it."""

    name: str
    kind: str
    shape: str
    classes: str
    load: Callable[[DataConfig], RawData]
    where: Callable[[DataConfig], str]
    fetch: Callable[[DataConfig], None] | None = field(default=None)


def register(source: Source) -> Source:
    DATASETS.register(source.name)(source)
    return source


# --------------------------------------------------------------------------- checks
def validate_arrays(x: np.ndarray, y: np.ndarray, where: str, num_classes: int | None = None) -> np.ndarray:
    """Check one split; returns y as int64. num_classes given: labels must lie below it."""
    if len(x) != len(y):
        raise UserError(f"{where}: x has {len(x)} examples but y has {len(y)}; they must match")
    if len(x) == 0:
        raise UserError(f"{where}: no examples")
    if not np.issubdtype(x.dtype, np.number):
        raise UserError(f"{where}: x must be numeric, got dtype {x.dtype}")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        bad = np.argwhere(~np.isfinite(x.reshape(len(x), -1)).all(axis=1)).ravel()
        raise UserError(f"{where}: x has NaN or infinite values in {len(bad)} examples (first: index {bad[0]})")
    y = np.asarray(y)
    if y.ndim != 1:
        raise UserError(f"{where}: y must be a 1-D array of class indices, got shape {y.shape}")
    if np.issubdtype(y.dtype, np.floating):
        if not np.isfinite(y).all() or (y != np.round(y)).any():
            raise UserError(f"{where}: labels must be whole numbers 0..C-1")
    elif not np.issubdtype(y.dtype, np.integer):
        raise UserError(f"{where}: labels must be integers 0..C-1, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if y.min() < 0 or (num_classes is not None and y.max() >= num_classes):
        bad = y[(y < 0) | (y >= (num_classes or np.iinfo(np.int64).max))]
        allowed = f"0..{num_classes - 1}" if num_classes else "0 or more"
        raise UserError(f"{where}: label {bad[0]} out of range; allowed {allowed}")
    return y


def check_classes(y: np.ndarray, classes: list[str], where: str) -> None:
    counts = np.bincount(y, minlength=len(classes))
    empty = [classes[i] for i in np.flatnonzero(counts == 0)]
    if empty:
        raise UserError(f"{where}: class {empty[0]!r} has no training examples; every class needs some")


def stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded, deterministic (keep, held_out) index split with each class in proportion."""
    rng = np.random.default_rng(seed)
    keep, held = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_held = int(round(len(idx) * fraction))
        if len(idx) > 1:
            n_held = min(max(n_held, 1), len(idx) - 1)
        else:
            n_held = 0
        held.append(idx[:n_held])
        keep.append(idx[n_held:])
    return rng.permutation(np.concatenate(keep)), rng.permutation(np.concatenate(held))


def carve_test(x: np.ndarray, y: np.ndarray, fraction: float) -> tuple[np.ndarray, ...]:
    train, test = stratified_split(y, fraction, TEST_SPLIT_SEED)
    return x[train], y[train], x[test], y[test]


# ------------------------------------------------------------------ IDX: (Fashion-)MNIST
MNIST = {
    "urls": ["https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"],
    "sha256": [
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    ],
    "system": [],
    "classes": [str(i) for i in range(10)],
}
FASHION = {
    "urls": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
             "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"],
    "sha256": [
        "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    ],
    "system": ["/usr/share/datasets/fashion-mnist"],
    "classes": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                "Ankle boot"],
}


def _idx_dir_has(d: Path) -> bool:
    return all(idx_file_in(d, f) for f in IDX_FILES)


def _idx_candidates(name: str, spec: dict, cfg: DataConfig) -> list[Path]:
    dirs: list[Path] = []
    for root in (cfg.path, os.environ.get("COACH_DATA_DIR")):
        if root:
            dirs += [Path(root) / name, Path(root)]
    dirs += [Path(p) for p in spec["system"]]
    dirs.append(cache_dir() / name)
    return dirs


def _idx_where(name: str, spec: dict) -> Callable[[DataConfig], str]:
    def where(cfg: DataConfig) -> str:
        for d in _idx_candidates(name, spec, cfg):
            if _idx_dir_has(d):
                return str(d)
        return f"download to {cache_dir() / name} from {spec['urls'][0]}"

    return where


def _idx_fetch(name: str, spec: dict) -> Callable[[DataConfig], None]:
    def fetch(cfg: DataConfig) -> None:
        if not any(_idx_dir_has(d) for d in _idx_candidates(name, spec, cfg)):
            for fname, sha in zip(IDX_FILES, spec["sha256"]):
                download([u + fname + ".gz" for u in spec["urls"]], cache_dir() / name / f"{fname}.gz", sha)

    return fetch


def _idx_loader(name: str, spec: dict) -> Callable[[DataConfig], RawData]:
    def load(cfg: DataConfig) -> RawData:
        _idx_fetch(name, spec)(cfg)
        d = next(d for d in _idx_candidates(name, spec, cfg) if _idx_dir_has(d))
        arrays = [read_idx(d / f if (d / f).exists() else d / f"{f}.gz") for f in IDX_FILES]
        xtr, ytr, xte, yte = arrays
        for x, what in ((xtr, IDX_FILES[0]), (xte, IDX_FILES[2])):
            if x.ndim != 3:
                raise UserError(f"{d / what}: expected images N x H x W, got shape {x.shape}")
        ytr = validate_arrays(xtr, ytr, f"{d}/{IDX_FILES[1]}", 10)
        yte = validate_arrays(xte, yte, f"{d}/{IDX_FILES[3]}", 10)
        to_float = lambda a: (a.astype(np.float32) / 255.0)[:, None]  # noqa: E731  (N, 1, H, W)
        return RawData("image", to_float(xtr), ytr, to_float(xte), yte, list(spec["classes"]), str(d))

    return load


for _name, _spec in (("fashion-mnist", FASHION), ("mnist", MNIST)):
    register(Source(_name, "image", "1x28x28", "10", _idx_loader(_name, _spec), _idx_where(_name, _spec),
                    _idx_fetch(_name, _spec)))


# ------------------------------------------------------------------------- MNIST-1D
def _load_mnist1d(cfg: DataConfig) -> RawData:
    """Greydanus (2020). Generated locally with the package's own code; never downloaded."""
    path = cache_dir() / "mnist1d" / "mnist1d-default.npz"
    if not path.exists():
        from mnist1d.data import get_dataset_args, make_dataset

        d = make_dataset(get_dataset_args())
        buf = io.BytesIO()
        np.savez(buf, x=d["x"], y=d["y"], x_test=d["x_test"], y_test=d["y_test"])
        atomic_write_bytes(path, buf.getvalue())
    with np.load(path, allow_pickle=False) as d:
        x, y, xt, yt = (d[k] for k in ("x", "y", "x_test", "y_test"))
    x, xt = x.astype(np.float32)[:, None], xt.astype(np.float32)[:, None]
    return RawData("signal", x, y.astype(np.int64), xt, yt.astype(np.int64), [str(i) for i in range(10)],
                   f"generated by mnist1d.make_dataset (cached at {path})")


register(Source("mnist1d", "signal", "1x40", "10", _load_mnist1d,
                lambda cfg: "generated locally by mnist1d.make_dataset (seed 42)"))


# --------------------------------------------------------------------------- digits
def _load_digits(cfg: DataConfig) -> RawData:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None]
    x, y, xt, yt = carve_test(x, d.target.astype(np.int64), cfg.test_fraction)
    return RawData("image", x, y, xt, yt, [str(i) for i in range(10)], "scikit-learn load_digits (bundled)")


register(Source("digits", "image", "1x8x8", "10", _load_digits, lambda cfg: "scikit-learn load_digits (bundled)"))


# -------------------------------------------------------------------------- CIFAR-10
CIFAR10 = {
    "urls": ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"],
    "sha256": "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
    "dir": "cifar-10-batches-py",
    "train": [f"data_batch_{i}" for i in range(1, 6)],
    "test": ["test_batch"],
}


class _ArrayUnpickler(pickle.Unpickler):
    """CIFAR's batches are pickles: allow only what a dict of numpy arrays needs."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar"), ("builtins", "bytes")}

    def find_class(self, module: str, name: str):  # noqa: ANN201
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            d = _ArrayUnpickler(f, encoding="bytes").load()
        data = np.asarray(d[b"data"], dtype=np.uint8)
        labels = np.asarray(d[b"labels"])
    except FileNotFoundError:
        raise UserError(f"{path}: missing CIFAR-10 batch file") from None
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise UserError(f"{path}: not a CIFAR-10 python batch ({e}); the file is corrupt or truncated") from None
    if data.ndim != 2 or data.shape[1] != 3072:
        raise UserError(f"{path}: expected data of shape N x 3072, got {data.shape}")
    return data.reshape(-1, 3, 32, 32), labels


def _cifar_candidates(cfg: DataConfig) -> list[Path]:
    roots = [r for r in (cfg.path, os.environ.get("COACH_DATA_DIR")) if r] + [str(cache_dir())]
    return [Path(r) / CIFAR10["dir"] for r in roots] + [Path(r) / "cifar10" / CIFAR10["dir"] for r in roots]


def _cifar_fetch(cfg: DataConfig) -> None:
    if any(c.is_dir() for c in _cifar_candidates(cfg)):
        return
    archive = download(CIFAR10["urls"], cache_dir() / "cifar-10-python.tar.gz", CIFAR10["sha256"])
    extract_cifar(archive, cache_dir())


def extract_cifar(archive: Path, root: Path) -> Path:
    """Extract only the expected batch files, into a temp folder renamed into place."""
    wanted = {f"{CIFAR10['dir']}/{n}" for n in CIFAR10["train"] + CIFAR10["test"] + ["batches.meta"]}
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".cifar-"))
    with tarfile.open(archive) as tar:
        for m in tar.getmembers():
            if m.name in wanted and m.isfile():
                src = tar.extractfile(m)
                assert src is not None
                (tmp / Path(m.name).name).write_bytes(src.read())
    dest = root / CIFAR10["dir"]
    os.replace(tmp, dest)
    return dest


def _load_cifar10(cfg: DataConfig) -> RawData:
    _cifar_fetch(cfg)
    d = next(c for c in _cifar_candidates(cfg) if c.is_dir())
    parts = [_read_cifar_batch(d / n) for n in CIFAR10["train"]]
    xtr, ytr = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    xte, yte = _read_cifar_batch(d / CIFAR10["test"][0])
    ytr = validate_arrays(xtr, ytr, str(d / "data_batch_*"), 10)
    yte = validate_arrays(xte, yte, str(d / "test_batch"), 10)
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    return RawData("image", xtr.astype(np.float32) / 255.0, ytr, xte.astype(np.float32) / 255.0, yte, classes, str(d))


def _cifar_where(cfg: DataConfig) -> str:
    found = [c for c in _cifar_candidates(cfg) if c.is_dir()]
    return str(found[0]) if found else f"download to {cache_dir()} from {CIFAR10['urls'][0]}"


register(Source("cifar10", "image", "3x32x32", "10", _load_cifar10, _cifar_where, _cifar_fetch))


# ---------------------------------------------------------------------- image folder
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def _need_path(cfg: DataConfig, what: str) -> Path:
    if not cfg.path:
        raise UserError(f"data.path: the {cfg.name} source needs data.path ({what})")
    p = Path(cfg.path)
    if not p.exists():
        raise UserError(f"data.path: {p} does not exist")
    return p


def _scan_folder(root: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise UserError(f"{root}: no class sub-folders; expected one folder per class with images inside")
    items = []
    for ci, c in enumerate(classes):
        files = sorted(f for f in (root / c).rglob("*") if f.is_file() and not f.name.startswith("."))
        if not files:
            raise UserError(f"{root / c}: class {c!r} has no images; every class needs some")
        items += [(f, ci) for f in files]
    return classes, items


def _read_images(items: list[tuple[Path, int]], size: tuple[int, int], color: str) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image, UnidentifiedImageError

    images = []
    for f, _ in items:
        try:
            with Image.open(f) as im:
                im.load()
                images.append(im.copy())
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            kind = "not an image" if f.suffix.lower() not in IMAGE_EXTENSIONS else "corrupt or truncated image"
            raise UserError(f"{f}: {kind} ({e.__class__.__name__}); remove it or fix it") from None
    gray = color == "gray" or (color == "auto" and all(im.mode in ("1", "L", "I", "I;16", "F") for im in images))
    mode = "L" if gray else "RGB"
    h, w = size
    arr = np.stack([np.asarray(im.convert(mode).resize((w, h), Image.BILINEAR), dtype=np.float32) for im in images])
    arr = arr[:, None] if gray else arr.transpose(0, 3, 1, 2)
    return arr / 255.0, np.array([c for _, c in items], dtype=np.int64)


def _load_image_folder(cfg: DataConfig) -> RawData:
    root = _need_path(cfg, "a folder with one sub-folder of images per class")
    if (root / "train").is_dir() and (root / "test").is_dir():
        classes, items = _scan_folder(root / "train")
        test_classes, test_items = _scan_folder(root / "test")
        if test_classes != classes:
            raise UserError(f"{root / 'test'}: class folders {test_classes} differ from train's {classes}")
        x, y = _read_images(items, cfg.image_size, cfg.color)
        xt, yt = _read_images(test_items, cfg.image_size, "rgb" if x.shape[1] == 3 else "gray")
    else:
        classes, items = _scan_folder(root)
        x, y = _read_images(items, cfg.image_size, cfg.color)
        x, y, xt, yt = carve_test(x, y, cfg.test_fraction)
    return RawData("image", x, y, xt, yt, classes, str(root))


register(Source("image-folder", "image", "C x image_size", "one per sub-folder", _load_image_folder,
                lambda cfg: cfg.path or "data.path (a folder of class sub-folders)"))


# ------------------------------------------------------------------------------ npz
def _as_layout(x: np.ndarray, layout: str, where: str) -> tuple[Kind, np.ndarray]:
    x = x.astype(np.float32)
    if layout == "auto":
        layout = {2: "vector", 3: "image", 4: "image"}.get(x.ndim, "")
        if not layout:
            raise UserError(f"{where}: x has shape {x.shape}; expected N x D, N x H x W or N x C x H x W")
    if layout == "vector":
        return "vector", x.reshape(len(x), -1)
    if layout == "signal":
        if x.ndim not in (2, 3):
            raise UserError(f"{where}: data.layout=signal needs x of N x L or N x C x L, got {x.shape}")
        return "signal", x[:, None] if x.ndim == 2 else x
    if x.ndim == 3:
        return "image", x[:, None]
    if x.ndim == 4:
        if x.shape[1] not in (1, 3, 4) and x.shape[3] in (1, 3, 4):
            x = x.transpose(0, 3, 1, 2)  # N x H x W x C -> channels first
        return "image", np.ascontiguousarray(x)
    raise UserError(f"{where}: data.layout=image needs x of N x H x W or N x C x H x W, got {x.shape}")


def _load_npz(cfg: DataConfig) -> RawData:
    path = _need_path(cfg, "an .npz file with arrays x and y (optionally x_test, y_test, classes)")
    try:
        with np.load(path, allow_pickle=False) as d:
            arrays = {k: d[k] for k in d.files}
    except (OSError, ValueError, EOFError) as e:
        raise UserError(f"{path}: not a readable .npz file ({e})") from None
    except Exception as e:  # zipfile.BadZipFile and friends from a corrupt archive
        raise UserError(f"{path}: corrupt .npz file ({e.__class__.__name__}: {e})") from None
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        raise UserError(f"{path}: missing array(s) {missing}; found {sorted(arrays)}")
    return raw_from_arrays(arrays, cfg, str(path))


def raw_from_arrays(arrays: dict[str, np.ndarray], cfg: DataConfig, where: str) -> RawData:
    """x, y (optionally x_test, y_test, classes) as an .npz holds them, or as a caller passes them
    in memory: the same checks either way (shapes, NaN, label range, one layout)."""
    names = [str(c) for c in arrays["classes"]] if arrays.get("classes") is not None else None
    y = validate_arrays(arrays["x"], arrays["y"], f"{where} (x, y)", len(names) if names else None)
    classes = names or [str(i) for i in range(int(y.max()) + 1)]
    kind, x = _as_layout(arrays["x"], cfg.layout, where)
    if arrays.get("x_test") is not None:
        if arrays.get("y_test") is None:
            raise UserError(f"{where}: x_test given without y_test")
        yt = validate_arrays(arrays["x_test"], arrays["y_test"], f"{where} (x_test, y_test)", len(classes))
        _, xt = _as_layout(arrays["x_test"], cfg.layout, f"{where} (x_test)")
        if xt.shape[1:] != x.shape[1:]:
            raise UserError(f"{where}: x_test examples have shape {xt.shape[1:]}, x has {x.shape[1:]}")
    else:
        x, y, xt, yt = carve_test(x, y, cfg.test_fraction)
    return RawData(kind, x, y, xt, yt, classes, where)


register(Source("npz", "from file", "from file", "from labels", _load_npz,
                lambda cfg: cfg.path or "data.path (an .npz with x, y)"))


def _in_memory(cfg: DataConfig) -> RawData:
    raise UserError("data.name=arrays: these data were passed in memory (coach.fit(data=(x, y)) and the like) "
                    "and are not on disk; pass them again, e.g. coach.fit(resume=RUN_DIR, data=(x, y))")


register(Source("arrays", "in memory", "from arrays", "from labels", _in_memory,
                lambda cfg: "arrays passed from Python (coach.fit(data=(x, y)))"))


def load_raw(cfg: DataConfig) -> RawData:
    cfg = resolved(cfg)
    source: Source = DATASETS.get(cfg.name, "data.name")  # type: ignore[assignment]
    raw = source.load(cfg)
    check_classes(raw.y_train, raw.classes, f"{raw.where} (training split)")
    return raw
