"""What to train, prepared once at the edge: every entry point (`coach.fit`, `coach.check`,
`coach.search`, `coach.autopilot`, the CLI) turns what its caller gave into a `Job` here, and the
layers below take the job: the resolved config, the data, one way to make the model (a maker:
coach's builder or the user's module, coach.nn.maker) and whether the results live on disk
only when asked.

What a caller may give: a Config (or nothing: the defaults), short settings (epochs=10,
lr=3e-3: Config.set), data held in memory ((x, y) arrays or tensors, a dict, a Dataset or a
DataLoader: coach.data.memory) or a loaded Data, and a model: nothing (the config's), an
nn.Module or a function that builds one (coach.nn.own), in the config's place too
(`fit(my_module, (x, y))`, the notebook form), or a model coach already built (transfer
learning passes its own with its parameter groups).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from torch import Tensor, nn

from coach.config import Config
from coach.data import Data, load_data, resolved
from coach.data.memory import as_data, caller_order, in_memory
from coach.errors import UserError
from coach.nn.maker import BUILDER, Maker, maker_for
from coach.nn.models import CoachModel
from coach.nn.own import OwnModel


@dataclass(frozen=True)
class Job:
    cfg: Config  # resolved: settings applied, model.name=module for your model, data.name=arrays for data in memory
    data: Data | None  # None: each worker loads it from cfg (a search over processes)
    maker: Maker
    held: bool  # data or a model that live in this process: results in a temporary folder unless one is asked
    prebuilt: nn.Module | None = None  # a model already built (transfer learning's head and body; a wrapped module)
    given: tuple[Tensor, Tensor] | None = None  # data in memory as the caller ordered them (label alignment)

    @property
    def mine(self) -> bool:
        """The model is the user's (it is saved with torch.export, reloaded with their module)."""
        return self.maker is not BUILDER or isinstance(self.prebuilt, OwnModel)

    def with_config(self, cfg: Config) -> "Job":
        """The same data and maker for another config (a variant: another width, a setting off)."""
        return replace(self, cfg=cfg)

    def loaded(self) -> "Job":
        return self if self.data is not None else replace(self, data=load_data(self.cfg.data, self.cfg.seed))

    def build(self, cfg: Config | None = None, in_place: bool = False) -> nn.Module:
        """The model for cfg (default the job's) on the job's data; in_place: your module itself,
        not a copy (coach.fit trains it in place, as Keras and Lightning do)."""
        if self.prebuilt is not None:
            return self.prebuilt
        cfg, d = cfg or self.cfg, self.data
        assert d is not None, "load the job's data first (Job.loaded)"
        return self.maker.build(cfg, d.input_shape, d.num_classes, d.preprocess, d.train.x[:256],
                                copy_module=not in_place)


def prepare(config: Config | nn.Module | Any = None, data: Data | Any = None, model: Any = None,
            settings: dict[str, Any] | None = None, load: bool = True) -> Job:
    """The job for what a caller gave (see the module's docstring). load=False leaves data that
    are not held in memory to be loaded later (Job.loaded)."""
    if isinstance(config, nn.Module) or (callable(config) and not isinstance(config, Config)):
        if model is not None:
            raise UserError("a model was given twice (first argument and model=)")
        model, config = config, None
    cfg = config if config is not None else Config()
    if not isinstance(cfg, Config):
        raise UserError(f"config: {type(cfg).__name__}; pass a coach.Config (coach.make_config, coach.load_config)")
    cfg = cfg.set(**settings) if settings else cfg
    prebuilt = model if isinstance(model, (CoachModel, OwnModel)) else None
    maker = maker_for(model)
    maker.honoured(cfg)
    if maker.name is not None or isinstance(prebuilt, OwnModel):
        cfg = cfg.replace(**{"model.name": "module"})
    given = None
    held = in_memory(data)
    if held:  # arrays, tensors, a Dataset or DataLoader: the same checks, split and preprocessing as a file
        given = caller_order(data)
        data, cfg = as_data(data, cfg)
    elif cfg.data.name is None:  # the data layer decides which source reads data.path
        cfg = cfg.replace(**{"data.name": resolved(cfg.data).name})
    else:
        resolved(cfg.data)  # a name and a path that disagree: refused here, before any folder is made
    job = Job(cfg, data, maker, held or maker.name is not None, prebuilt, given)
    return job.loaded() if load else job
