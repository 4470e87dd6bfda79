"""The README's reference tables are what the code says (python -m coach.reference rewrites them)."""
from pathlib import Path

from coach.babysit.findings import ADVICE, CODES, SEVERITY
from coach.reference import config_reference, fill, findings_reference, keys

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_reference_blocks_are_in_sync_with_the_code():
    text = README.read_text()
    assert fill(text) == text, "README.md is out of date: run `python -m coach.reference`"


def test_every_key_and_code_is_documented():
    table = config_reference()
    for key, field in keys():
        row = next(r for r in table.splitlines() if r.startswith(f"| `{key}` |"))
        cells = [c.strip() for c in row.split(" | ")]
        assert cells[4], f"{key}: no description (give the field one, or add it to coach.reference.DOC)"
        assert cells[5], f"{key}: no lecture"
    assert "| `optim.name` | str | `adam` | adagrad, adam, adamw, lbfgs, momentum, nesterov, rmsprop, sgd |" in table
    assert "| `optim.lr` | float | `0.001` | > 0 |" in table
    assert set(CODES) == set(ADVICE) == set(SEVERITY)
    assert all(f"| `{code}` |" in findings_reference() for code in CODES)
