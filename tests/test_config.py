import re
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
    cfg = make_config(overrides=["optim.lr=0.01", "model.name=mlp", "model.hidden=[64, 32]", "train.time_budget=2m",
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
    ("data.name=imagenet", "data.name", "allowed: arrays, cifar10"),
    ("train.time_budget=soon", "train.time_budget", "not a duration"),
    ("data.val_fraction=1.5", "data.val_fraction", "less than 1"),
    # regression cases from fuzzing (issue: hardening): booleans are not numbers, inf is not a rate,
    # sizes past memory are refused here instead of deep in torch
    ("train.epochs=true", "train.epochs", "got a boolean"),
    ("model.width=true", "model.width", "got a boolean"),
    ("augment.crop_padding=true", "augment.crop_padding", "got a boolean"),
    ("model.hidden=[64, true]", "model.hidden", "got a boolean"),
    ("optim.lr=inf", "optim.lr", "finite"),
    ("augment.crop_scale=[0.3, .inf]", "augment.crop_scale", "finite"),
    ("augment.crop_padding=99999999999999999999", "augment.crop_padding", "less than or equal to 256"),
    ("model.depth=99999999999999999999", "model.depth", "less than or equal to 256"),
    ("train.batch_size=10000000000", "train.batch_size", "less than or equal to"),
    ("data.image_size=[0, 5]", "data.image_size", "greater than or equal to 1"),
    ("optim.betas=[2, 0.999]", "optim.betas", "decay rate in [0, 1)"),
    ("schedule.milestones=[0.5, 3]", "schedule.milestones", "fractions of training in (0, 1)"),
])
def test_bad_values_name_the_dotted_key(override, key, words):
    with pytest.raises(UserError) as e:
        make_config(overrides=[override])
    assert key in str(e.value) and words in str(e.value)


@pytest.mark.parametrize("overrides, words", [
    (["model.name=convnet", "regularize.dropconnect=0.2"], "regularize.dropconnect=0.2 has no effect with model.name=convnet"),
    (["model.name=resnet", "regularize.dropconnect=0.2"], "built into mlp only"),
    (["model.name=mlp", "regularize.stochastic_depth=0.1"], "regularize.stochastic_depth=0.1 has no effect with model.name=mlp"),
    (["model.name=convnet", "regularize.stochastic_depth=0.1"], "built into resnet only"),
    (["model.name=resnet", "model.pool=fractional"], "model.pool=fractional has no effect with model.name=resnet"),
    (["model.name=mlp", "regularize.spatial_dropout=0.2"], "built into convnet only"),
    (["model.name=convnet", "model.hidden=[64]"], "model.hidden=[64] has no effect with model.name=convnet"),
    (["optim.name=lbfgs", "optim.weight_decay=0.01"], "use regularize.l2"),
    (["optim.name=lbfgs", "regularize.dropout=0.5"], "regularize.dropout adds noise"),
    (["optim.name=lbfgs", "augment.noise=0.1"], "augment.noise adds noise"),
])
def test_a_setting_that_would_be_ignored_is_an_error_naming_both_keys(overrides, words):
    with pytest.raises(UserError, match=re.escape(words)):
        make_config(overrides=overrides)


def test_settings_honoured_by_the_chosen_model_are_accepted():
    assert make_config(overrides=["model.name=mlp", "regularize.dropconnect=0.2"]).regularize.dropconnect == 0.2
    assert make_config(overrides=["model.name=resnet", "regularize.stochastic_depth=0.2"]).model.name == "resnet"
    assert make_config(overrides=["model.name=convnet", "model.pool=fractional"]).model.pool == "fractional"
    assert make_config(overrides=["optim.name=lbfgs", "regularize.l2=0.01"]).optim.name == "lbfgs"


def test_booleans_stay_booleans_and_numbers_stay_lenient():
    cfg = make_config(overrides=["augment.hflip=true", "optim.lr=1e-3", "train.epochs=3", "optim.weight_decay=0"])
    assert cfg.augment.hflip is True and cfg.optim.lr == 1e-3 and cfg.train.epochs == 3


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
