import numpy as np
import pytest

from coach.data.idx import read_idx, write_idx
from coach.errors import UserError


@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
def test_round_trip(tmp_path, name):
    x = np.random.randint(0, 255, size=(5, 4, 3), dtype=np.uint8)
    write_idx(tmp_path / name, x)
    np.testing.assert_array_equal(read_idx(tmp_path / name), x)


def test_truncated_and_bad_magic(tmp_path):
    write_idx(tmp_path / "a.idx", np.zeros((10, 28, 28), np.uint8))
    raw = (tmp_path / "a.idx").read_bytes()
    (tmp_path / "t.idx").write_bytes(raw[:-100])
    with pytest.raises(UserError, match=r"t\.idx: IDX file truncated"):
        read_idx(tmp_path / "t.idx")
    (tmp_path / "m.idx").write_bytes(b"\x01\x02" + raw[2:])
    with pytest.raises(UserError, match="bad magic"):
        read_idx(tmp_path / "m.idx")
    (tmp_path / "g.idx.gz").write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(UserError, match="g.idx.gz"):
        read_idx(tmp_path / "g.idx.gz")
