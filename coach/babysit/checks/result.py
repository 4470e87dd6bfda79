"""What `coach check` found and measured; how one finding absorbs the ones it explains."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from coach.babysit.findings import Finding, problems


@dataclass
class CheckResult:
    findings: list[Finding] = field(default_factory=list)
    steps: dict[str, Any] = field(default_factory=dict)  # what each step measured, for the report
    config: dict[str, Any] = field(default_factory=dict)  # the config checked (its title on the page)

    @property
    def healthy(self) -> bool:
        return not problems(self.findings)

    def to_dict(self) -> dict[str, Any]:
        return {"healthy": self.healthy, "findings": [f.to_dict() for f in self.findings], "steps": self.steps,
                "config": self.config}


def explained(out: CheckResult, codes: set[str], why: str) -> None:
    """Drop findings the data finding explains, and say so in it (one cause, its evidence merged)."""
    data = next(f for f in out.findings if f.code == "data_not_normalized")
    gone = [f for f in out.findings if f.code in codes]
    if not gone:
        return
    out.findings = [f for f in out.findings if f.code not in codes]
    data.message += f"; {'it also' if 'explains' in data.evidence else 'this alone'} explains " \
                    f"{', '.join(f.code for f in gone)} ({why})"
    data.evidence.setdefault("explains", []).extend({"code": f.code, "message": f.message} for f in gone)
