"""The babysitter: the lectures' checklist (`check`), curve diagnosis and findings."""
from coach.babysit.checks import CheckResult, check, lr_probe, lr_range_test
from coach.babysit.diagnose import diagnose, diagnose_run
from coach.babysit.findings import CODES, Finding, problems

__all__ = ["CheckResult", "check", "lr_probe", "lr_range_test", "diagnose", "diagnose_run", "CODES", "Finding", "problems"]
