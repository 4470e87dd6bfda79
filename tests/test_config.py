import subprocess
import sys

import pytest

from coach.config import Config, load_config, make_config, parse_duration
from coach.errors import UserError


def test_defaults_validate_and_round_trip(tmp_path):
    cfg = make_config()
    assert cfg.optim.name == "adam" and cfg.data.val_fraction == 0.1
    from coach.config import save_config
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg


def test_overrides_are_parsed_as_yaml():
    cfg = make_config(overrides=["optim.lr=0.01", "model.hidden=[64, 32]", "train.time_budget=2m",
                                 "augment.hflip=true"])
    assert cfg.optim.lr == 0.01 and cfg.model.hidden == [64, 32] and cfg.train.time_budget == 120.0
    assert cfg.augment.hflip is True


def test_config_is_frozen():
    cfg = Config()
    with pytest.raises(Exception):
        cfg.optim.lr = 1.0  # type: ignore[misc]
    assert cfg.replace(**{"optim.lr": 0.5}).optim.lr == 0.5 and cfg.optim.lr == 1e-3


@pytest.mark.parametrize("override, key, words", [
    ("optim.lrr=0.1", "optim.lrr", "unknown key"),
    ("optim.lr=fast", "optim.lr", "valid number"),
    ("optim.lr=-1", "optim.lr", "greater than 0"),
    ("optim.name=adamax", "optim.name", "allowed: adagrad, adam"),
    ("model.activation=swish", "model.activation", "allowed: elu"),
    ("data.name=imagenet", "data.name", "allowed: cifar10"),
    ("train.time_budget=soon", "train.time_budget", "not a duration"),
    ("data.val_fraction=1.5", "data.val_fraction", "less than 1"),
])
def test_bad_values_name_the_dotted_key(override, key, words):
    with pytest.raises(UserError) as e:
        make_config(overrides=[override])
    assert key in str(e.value) and words in str(e.value)


def test_unknown_section_and_bad_file(tmp_path):
    with pytest.raises(UserError, match="optimizer: unknown key"):
        make_config({"optimizer": {"lr": 1}})
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: [1, 2")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(UserError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_parse_duration():
    assert parse_duration("90s") == 90 and parse_duration("1.5h") == 5400 and parse_duration(30) == 30


def test_cli_user_error_exits_2_without_traceback():
    p = subprocess.run([sys.executable, "-m", "coach", "train", "--set", "optim.name=adamax"],
                       capture_output=True, text=True)
    assert p.returncode == 2
    assert "optim.name" in p.stderr and "Traceback" not in p.stderr
