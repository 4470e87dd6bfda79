import hashlib

import pytest

from coach.data.download import download
from coach.errors import UserError


def test_download_verifies_checksum_and_renames(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"x" * 5000)
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    dest = tmp_path / "cache" / "file.bin"
    download([f"file://{src}"], dest, sha)
    assert dest.read_bytes() == src.read_bytes()
    assert [p.name for p in dest.parent.iterdir()] == ["file.bin"]


def test_bad_checksum_leaves_nothing(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"tampered")
    dest = tmp_path / "cache" / "file.bin"
    with pytest.raises(UserError, match="checksum mismatch"):
        download([f"file://{src}"], dest, "0" * 64)
    assert list(dest.parent.iterdir()) == []


def test_falls_back_to_next_mirror(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"data")
    dest = tmp_path / "out.bin"
    download([f"file://{tmp_path}/missing.bin", f"file://{src}"], dest, hashlib.sha256(b"data").hexdigest())
    assert dest.read_bytes() == b"data"


def test_download_shows_progress_as_lines_in_a_log(tmp_path, capsys, monkeypatch):
    import itertools

    import coach.data.download as dl
    src = tmp_path / "big.bin"
    src.write_bytes(b"x" * (5 << 20))  # 5 chunks of 1 MiB
    ticks = itertools.count(0, 4)  # each chunk "takes" 4 s: a line every ~10 s, as in a slow download
    monkeypatch.setattr(dl._Progress, "__init__", _clocked(dl._Progress.__init__, lambda: next(ticks)))
    download([f"file://{src}"], tmp_path / "out" / "big.bin", hashlib.sha256(src.read_bytes()).hexdigest())
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("downloading big.bin: ")]
    assert "\r" not in err and 2 <= len(lines) <= 3  # after 12 s, and the closing line; not one per chunk
    assert lines[-1] == "downloading big.bin: 5.2 MB of 5.2 MB (100%)"


def _clocked(init, clock):
    def patched(self, name, total):
        init(self, name, total)
        self.clock, self.last = clock, clock()
    return patched
