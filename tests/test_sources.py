import io
import pickle
import tarfile

import numpy as np
import pytest
from PIL import Image

from coach.config import DataConfig
from coach.data import load_data, load_raw
from coach.data.idx import IDX_FILES, write_idx
from coach.data.sources import CIFAR10, extract_cifar, stratified_split
from coach.errors import UserError
from tests.conftest import FASHION_DIR, needs_fashion


def write_fake_idx(d, n_train=50, n_test=20, size=28):
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    write_idx(d / f"{IDX_FILES[0]}.gz", rng.integers(0, 256, (n_train, size, size), dtype=np.uint8))
    write_idx(d / f"{IDX_FILES[1]}.gz", np.arange(n_train, dtype=np.uint8) % 10)
    write_idx(d / f"{IDX_FILES[2]}.gz", rng.integers(0, 256, (n_test, size, size), dtype=np.uint8))
    write_idx(d / f"{IDX_FILES[3]}.gz", np.arange(n_test, dtype=np.uint8) % 10)


def test_mnist_from_data_dir(tmp_path):
    write_fake_idx(tmp_path / "mnist")
    raw = load_raw(DataConfig(name="mnist", path=str(tmp_path)))
    assert raw.x_train.shape == (50, 1, 28, 28) and raw.x_test.shape == (20, 1, 28, 28)
    assert 0 <= raw.x_train.min() and raw.x_train.max() <= 1 and raw.kind == "image"


def test_idx_label_out_of_range(tmp_path):
    write_fake_idx(tmp_path)
    write_idx(tmp_path / f"{IDX_FILES[1]}.gz", np.full(50, 12, dtype=np.uint8))
    with pytest.raises(UserError, match="label 12 out of range"):
        load_raw(DataConfig(name="mnist", path=str(tmp_path)))


@needs_fashion
def test_fashion_mnist_real_files():
    raw = load_raw(DataConfig(name="fashion-mnist"))
    assert raw.x_train.shape == (60000, 1, 28, 28) and raw.x_test.shape == (10000, 1, 28, 28)
    assert np.bincount(raw.y_train).tolist() == [6000] * 10 and raw.where == FASHION_DIR


def test_mnist1d_generated_locally():
    raw = load_raw(DataConfig(name="mnist1d"))
    assert raw.x_train.shape == (4000, 1, 40) and raw.x_test.shape == (1000, 1, 40) and raw.kind == "signal"


def test_digits_has_a_stable_carved_test_split():
    a = load_data(DataConfig(name="digits", split_seed=1))
    b = load_data(DataConfig(name="digits", split_seed=2))
    assert a.input_shape == (1, 8, 8) and a.num_classes == 10
    assert (a.test.x == b.test.x).all()  # the test split never depends on any seed
    assert not (a.val.y == b.val.y).all()  # the validation split follows data.split_seed
    assert (load_data(DataConfig(name="digits"), seed=5).val.y == load_data(DataConfig(name="digits")).val.y).all()
    assert len(a.train) + len(a.val) + len(a.test) == 1797


def test_class_subsets_and_per_class_limits():
    d = load_data(DataConfig(name="digits", classes=[5, 6, 7], per_class=10))
    assert d.classes == ["5", "6", "7"] and d.num_classes == 3
    assert np.bincount(d.train.y.numpy()).tolist() == [10, 10, 10]
    assert set(d.test.y.tolist()) == {0, 1, 2} and len(d.val) > 30
    with pytest.raises(UserError, match="data.classes"):
        load_data(DataConfig(name="digits", classes=[3, 12]))


def _cifar_batch(n, seed):
    rng = np.random.default_rng(seed)
    return {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, n)),
            b"batch_label": b"fake"}


def test_cifar10_real_format(tmp_path):
    """Small batches in the real python-pickle format, packed like the official archive."""
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for i, name in enumerate(CIFAR10["train"] + CIFAR10["test"] + ["batches.meta"]):
            data = pickle.dumps(_cifar_batch(20, i) if name != "batches.meta" else {b"label_names": []})
            info = tarfile.TarInfo(f"{CIFAR10['dir']}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    root = tmp_path / "data"
    root.mkdir()
    extract_cifar(archive, root)
    raw = load_raw(DataConfig(name="cifar10", path=str(root)))
    assert raw.x_train.shape == (100, 3, 32, 32) and raw.x_test.shape == (20, 3, 32, 32)
    expected = _cifar_batch(20, 0)[b"data"][0].reshape(3, 32, 32) / 255.0
    np.testing.assert_allclose(raw.x_train[0], expected, rtol=1e-6)


def test_cifar10_refuses_code_in_pickles(tmp_path):
    d = tmp_path / CIFAR10["dir"]
    d.mkdir()
    evil = pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], b"x": print})
    for name in CIFAR10["train"] + CIFAR10["test"]:
        (d / name).write_bytes(evil)
    with pytest.raises(UserError, match="data_batch_1: not a CIFAR-10 python batch"):
        load_raw(DataConfig(name="cifar10", path=str(tmp_path)))


def _image_folder(root, classes=("cat", "dog"), n=6, mode="RGB"):
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            arr = np.full((10, 12, 3) if mode == "RGB" else (10, 12), 40 * i, dtype=np.uint8)
            Image.fromarray(arr, mode).save(root / c / f"{i}.png")


def test_image_folder(tmp_path):
    _image_folder(tmp_path)
    raw = load_raw(DataConfig(name="image-folder", path=str(tmp_path), image_size=(8, 8), test_fraction=0.25))
    assert raw.classes == ["cat", "dog"] and raw.x_train.shape[1:] == (3, 8, 8)
    assert len(raw.x_train) + len(raw.x_test) == 12 and len(raw.x_test) == 4


def test_image_folder_with_train_and_test_folders(tmp_path):
    _image_folder(tmp_path / "train", n=6)
    _image_folder(tmp_path / "test", n=3)
    (tmp_path / "test" / "dog" / "2.png").unlink()  # the test folder decides the test split, as it is
    raw = load_raw(DataConfig(name="image-folder", path=str(tmp_path), image_size=(8, 8), test_fraction=0.25))
    assert len(raw.x_train) == 12 and len(raw.x_test) == 5  # nothing carved from train/
    assert sorted(raw.y_test.tolist()) == [0, 0, 0, 1, 1]
    # each test image is the one written: file i is filled with 40 * i
    assert sorted(round(float(v) * 255) for v in raw.x_test[:, 0, 0, 0]) == [0, 0, 40, 40, 80]
    (tmp_path / "test" / "bird").mkdir()
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(tmp_path / "test" / "bird" / "0.png")
    with pytest.raises(UserError, match="class folders .*bird.* differ from train's"):
        load_raw(DataConfig(name="image-folder", path=str(tmp_path)))


def test_npz_with_its_own_test_split(tmp_path):
    rng = np.random.default_rng(0)
    x, xt = rng.random((40, 6)).astype(np.float32), rng.random((7, 6)).astype(np.float32)
    y, yt = np.arange(40) % 4, np.array([3, 2, 1, 0, 0, 1, 2])
    raw = load_raw(_npz(tmp_path / "t.npz", x=x, y=y, x_test=xt, y_test=yt))
    assert np.array_equal(raw.x_test, xt) and np.array_equal(raw.y_test, yt)
    assert np.array_equal(raw.x_train, x) and np.array_equal(raw.y_train, y)  # nothing carved
    from coach.data import load_data
    data = load_data(DataConfig(name="npz", path=str(tmp_path / "t.npz"), val_fraction=0.25), seed=0)
    assert len(data.test) == 7 and len(data.train) + len(data.val) == 40
    with pytest.raises(UserError, match="x_test given without y_test"):
        load_raw(_npz(tmp_path / "u.npz", x=x, y=y, x_test=xt))
    with pytest.raises(UserError, match=r"x_test examples have shape \(5,\), x has \(6,\)"):
        load_raw(_npz(tmp_path / "w.npz", x=x, y=y, x_test=xt[:, :5], y_test=yt))


def test_image_folder_grayscale_auto(tmp_path):
    _image_folder(tmp_path, mode="L")
    raw = load_raw(DataConfig(name="image-folder", path=str(tmp_path), image_size=(8, 8)))
    assert raw.x_train.shape[1] == 1


def test_image_folder_bad_files(tmp_path):
    _image_folder(tmp_path)
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    with pytest.raises(UserError, match=r"notes\.txt: not an image"):
        load_raw(DataConfig(name="image-folder", path=str(tmp_path)))
    (tmp_path / "cat" / "notes.txt").unlink()
    good = (tmp_path / "dog" / "0.png").read_bytes()
    (tmp_path / "dog" / "0.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(UserError, match=r"0\.png: corrupt or truncated image"):
        load_raw(DataConfig(name="image-folder", path=str(tmp_path)))


def test_image_folder_empty_class(tmp_path):
    _image_folder(tmp_path)
    (tmp_path / "bird").mkdir()
    with pytest.raises(UserError, match="class 'bird' has no images"):
        load_raw(DataConfig(name="image-folder", path=str(tmp_path)))


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return DataConfig(name="npz", path=str(path))


def test_npz_ok_and_layouts(tmp_path):
    x = np.random.rand(40, 6).astype(np.float32)
    raw = load_raw(_npz(tmp_path / "v.npz", x=x, y=np.arange(40) % 4))
    assert raw.kind == "vector" and raw.classes == ["0", "1", "2", "3"]
    raw = load_raw(_npz(tmp_path / "i.npz", x=np.random.rand(40, 5, 5, 3), y=np.arange(40) % 2))
    assert raw.kind == "image" and raw.x_train.shape[1:] == (3, 5, 5)
    cfg = DataConfig(name="npz", path=str(tmp_path / "v.npz"), layout="signal")
    assert load_raw(cfg).x_train.shape[1:] == (1, 6)


@pytest.mark.parametrize("arrays, message", [
    (dict(x=np.zeros((10, 3)), y=np.zeros(9)), "x has 10 examples but y has 9"),
    (dict(x=np.full((10, 3), np.nan), y=np.zeros(10)), "NaN"),
    (dict(x=np.zeros((10, 3)), y=np.arange(10) % 2, classes=np.array(["a"])), "label 1 out of range"),
    (dict(x=np.zeros((10, 3)), y=np.array([0, 2] * 5)), "class '1' has no training examples"),
    (dict(x=np.zeros((10, 3)), y=np.linspace(0, 1, 10)), "whole numbers"),
    (dict(y=np.zeros(10)), r"missing array\(s\) \['x'\]"),
])
def test_npz_bad_data(tmp_path, arrays, message):
    with pytest.raises(UserError, match=message) as e:
        load_raw(_npz(tmp_path / "bad.npz", **arrays))
    assert "bad.npz" in str(e.value)


def test_npz_corrupt_file(tmp_path):
    (tmp_path / "c.npz").write_bytes(b"PK\x03\x04 broken zip")
    with pytest.raises(UserError, match="c.npz"):
        load_raw(DataConfig(name="npz", path=str(tmp_path / "c.npz")))


def test_stratified_split_is_deterministic_and_balanced():
    y = np.repeat(np.arange(5), 100)
    a_keep, a_held = stratified_split(y, 0.2, seed=3)
    b_keep, b_held = stratified_split(y, 0.2, seed=3)
    assert (a_held == b_held).all() and (a_keep == b_keep).all()
    assert np.bincount(y[a_held]).tolist() == [20] * 5
    assert set(a_keep).isdisjoint(a_held) and len(a_keep) + len(a_held) == 500


def test_limit_and_missing_path(tmp_path):
    data = load_data(DataConfig(name="digits", limit=100), seed=0)
    assert len(data.train) == 100
    with pytest.raises(UserError, match="data.path"):
        load_raw(DataConfig(name="npz"))


def test_the_data_layer_decides_which_source_reads_a_path(tmp_path):
    """The config validates values only (a path that is not there yet is a value); which source
    reads a path, and whether the disk agrees with a given name, coach.data.sources decides."""
    from coach.data import resolved
    from coach.data.resolve import source_of_path

    assert DataConfig(path=str(tmp_path / "later.npz")).name is None  # the config never looks at the disk
    assert resolved(DataConfig()).name == "fashion-mnist"
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 2), np.float32), y=np.arange(4) % 2)
    assert resolved(DataConfig(path=str(tmp_path / "d.npz"))).name == "npz"
    write_fake_idx(tmp_path / "idx" / "mnist")
    assert source_of_path(tmp_path / "idx") == "mnist"
    (tmp_path / "cifar" / "cifar-10-batches-py").mkdir(parents=True)
    assert source_of_path(tmp_path / "cifar") == "cifar10"
    (tmp_path / "imgs" / "cat").mkdir(parents=True)
    assert source_of_path(tmp_path / "imgs") == "image-folder"
    write_fake_idx(tmp_path / "bare")
    with pytest.raises(UserError, match="MNIST and Fashion-MNIST share: set data.name=mnist"):
        resolved(DataConfig(path=str(tmp_path / "bare")))
    with pytest.raises(UserError, match=r"data.path=.*gone does not exist"):
        resolved(DataConfig(path=str(tmp_path / "gone")))
    with pytest.raises(UserError, match="is a folder but data.name=npz"):
        resolved(DataConfig(name="npz", path=str(tmp_path / "imgs")))
    with pytest.raises(UserError, match="is a file but data.name=image-folder"):
        load_data(DataConfig(name="image-folder", path=str(tmp_path / "d.npz")))
