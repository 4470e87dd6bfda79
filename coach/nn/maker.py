"""How a model is made, behind one small protocol: coach's own builder (`Builder`: the
config's model.name, coach.nn.models) or the user's module or factory (`coach.nn.own.Own`).
Every layer above asks its maker to build a model for a config; none asks which kind it holds.
`maker_for` turns what a caller passed (nothing, a module, a factory) into one."""
from __future__ import annotations

from typing import Any, Protocol

from torch import Tensor, nn

from coach.config import Config, ModelConfig, RegularizeConfig
from coach.nn.models import CoachModel, build_model
from coach.nn.own import Own, OwnModel


class Maker(Protocol):
    name: str | None  # the user's module or factory, None for coach's builder
    searchable: list[str]  # the model.* / regularize.* keys its builds follow
    dropout: float  # the largest drop probability inside an instance (0: the config's is the model's)
    can_widen: bool  # whether a clearly wider copy exists (the checks' capacity control, the cost ladder)

    def honoured(self, cfg: Config) -> None: ...
    def unheeded(self, keys: list[str]) -> list[str]: ...
    def build(self, cfg: Config, input_shape: tuple[int, ...], num_classes: int, preprocess: nn.Module | None,
              batch: Tensor | None = None, reg: RegularizeConfig | None = None, model: ModelConfig | None = None,
              copy_module: bool = True) -> nn.Module: ...
    def net(self, cfg: Config, input_shape: tuple[int, ...], num_classes: int) -> nn.Module | None: ...
    def with_dropout(self, p: float) -> "Maker": ...


class Builder:
    """coach's models (mlp, convnet, resnet), built and initialized as the config says."""
    name = None
    dropout = 0.0
    can_widen = True

    @property
    def searchable(self) -> list[str]:
        return [f"model.{k}" for k in ModelConfig.model_fields if k != "name"] + \
            [f"regularize.{k}" for k in RegularizeConfig.model_fields]

    def honoured(self, cfg: Config) -> None:
        """The config validates what coach's own models can honour (coach.config)."""

    def unheeded(self, keys: list[str]) -> list[str]:
        return []

    def build(self, cfg: Config, input_shape: tuple[int, ...], num_classes: int, preprocess: nn.Module | None,
              batch: Tensor | None = None, reg: RegularizeConfig | None = None, model: ModelConfig | None = None,
              copy_module: bool = True) -> CoachModel:
        return build_model(model or cfg.model, input_shape, num_classes, reg or cfg.regularize, preprocess, batch=batch)

    def net(self, cfg: Config, input_shape: tuple[int, ...], num_classes: int) -> None:
        return None  # a run of coach's model is rebuilt from its config

    def with_dropout(self, p: float) -> "Builder":
        return self


BUILDER = Builder()


def maker_for(model: Any) -> Maker:
    """The maker for what a caller passed as `model`: coach's builder for nothing (or a model coach
    already built), else the user's module or factory (coach.nn.own)."""
    if model is None or isinstance(model, (CoachModel, OwnModel, Builder)):
        return BUILDER
    return model if isinstance(model, Own) else Own(model)
