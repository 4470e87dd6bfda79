"""coach's version, in one place: the package metadata (pyproject.toml reads it from here) and
every run's summary.json."""
__version__ = "0.1.0"
