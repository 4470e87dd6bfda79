"""Every file coach writes is whole or absent (coach.atomic): a crash before the rename leaves the
old file and no temporary one; weights, JSON and checkpoints all go through it."""
import os

import pytest
import torch

from coach.atomic import atomic_write_bytes
from coach.train.run import read_safetensors, save_safetensors


def test_atomic_write(tmp_path, monkeypatch):
    atomic_write_bytes(tmp_path / "a" / "b.txt", b"hello")
    assert (tmp_path / "a" / "b.txt").read_bytes() == b"hello"
    assert len(list((tmp_path / "a").iterdir())) == 1
    import os
    renames = []

    def dies_before_rename(src, dst):  # the process is killed after writing, before the rename
        renames.append((src, dst))
        raise OSError("killed")

    monkeypatch.setattr(os, "replace", dies_before_rename)
    with pytest.raises(OSError):
        atomic_write_bytes(tmp_path / "a" / "b.txt", b"a new, longer content")
    monkeypatch.undo()
    assert (tmp_path / "a" / "b.txt").read_bytes() == b"hello"  # the old file is whole, not half-new
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["b.txt"]  # and no temp file is left
    src, dst = renames[0]
    assert os.path.dirname(src) == str(tmp_path / "a") and str(dst) == str(tmp_path / "a" / "b.txt")


def test_weights_are_written_whole_or_not_at_all(tmp_path, monkeypatch):
    path = tmp_path / "w.safetensors"
    save_safetensors({"a": torch.ones(3)}, path)
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("killed")))
    with pytest.raises(OSError):
        save_safetensors({"a": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.equal(read_safetensors(path)["a"], torch.ones(3)) and os.listdir(tmp_path) == ["w.safetensors"]
