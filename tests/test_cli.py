"""The CLI's own decisions (the commands themselves are exercised in each module's tests)."""
from coach.cli import demo_folder


def test_demo_runs_again_without_losing_the_last_one(tmp_path):
    out = tmp_path / "demo"
    assert demo_folder(out) == (out, False)  # first time: a new session here
    out.mkdir()
    (out / "state.json").write_text("{}")
    assert demo_folder(out) == (out, True)  # interrupted: resumed
    (out / "result.json").write_text("{}")
    assert demo_folder(out) == (tmp_path / "demo-2", False)  # finished: kept, the next one beside it
    (tmp_path / "demo-2").mkdir()
    assert demo_folder(out) == (tmp_path / "demo-3", False)
