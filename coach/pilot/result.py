"""What `coach.autopilot` returns: the result as a plain dict (also in OUT/result.json) that a
notebook shows as the session's page, and that predicts with the chosen model."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from coach.errors import UserError
from coach.train.run import Kept, Run, TempDir, as_inputs, predictor, warn_scale


class SessionResult(Kept):
    """The session's result. keep: the TempDir the session lives in when it was given data in
    memory and no `out` (removed when this goes; result.save(path) keeps a copy)."""

    def __init__(self, result: dict[str, Any], root: str | Path | None = None, keep: TempDir | None = None):
        super().__init__(result, root or result["out"], keep)

    @property
    def out(self) -> Path:
        return Path(self["out"])

    def predict(self, x: Any) -> Any:
        """Class probabilities (numpy, N x C) of the chosen model (weights, test-time views,
        ensemble: as its test accuracy was measured) for raw inputs x."""
        if not self.get("model_dir"):
            raise UserError(f"this autopilot session stopped before training a model ({self.get('stopped')})")
        spec = Run.open(self["model_dir"]).spec
        xt = as_inputs(x, tuple(spec["input_shape"]))
        warn_scale(spec, xt)
        return predictor(self.out)[0].probabilities(xt).numpy()

    def _repr_html_(self) -> str:
        from coach.report.page import inline  # matplotlib: only once a notebook shows a page
        return inline(Path(self["report"]).read_text())
