import pytest
import torch

import coach
from coach.config import ModelConfig, RegularizeConfig
from coach.errors import UserError
from coach.nn.layers import StochasticDepth


@pytest.mark.parametrize("name", ["mlp", "convnet", "resnet"])
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 12, 12), (2, 40)])
def test_builders_on_images_and_signals(name, shape):
    model = coach.build_model(ModelConfig(name=name, width=8, depth=2, blocks=1), shape, 5)
    x = torch.randn(4, *shape)
    assert model(x).shape == (4, 5)
    assert model.embed(x).shape == (4, model.feature_dim)
    model.reset_head(3)
    assert model(x).shape == (4, 3) and model.num_classes == 3


def test_vectors_need_mlp():
    assert coach.build_model(ModelConfig(name="mlp"), (20,), 4)(torch.randn(2, 20)).shape == (2, 4)
    with pytest.raises(UserError, match="use model.name=mlp"):
        coach.build_model(ModelConfig(name="convnet"), (20,), 4)


def test_maxout_widens_the_layer_before():
    model = coach.build_model(ModelConfig(name="mlp", hidden=[16], activation="maxout",
                                          activation_kwargs={"pieces": 3}, norm="none"), (10,), 2)
    assert model.features[1].out_features == 48 and model.feature_dim == 16
    with pytest.raises(UserError, match="maxout"):
        coach.build_model(ModelConfig(name="resnet", activation="maxout"), (1, 8, 8), 2)


def test_regularizers_are_placed():
    reg = RegularizeConfig(dropout=0.3, dropconnect=0.2, stochastic_depth=0.5)
    mlp = coach.build_model(ModelConfig(name="mlp", hidden=[8, 8]), (4,), 2, reg)
    kinds = [type(m).__name__ for m in mlp.features]
    assert kinds.count("Dropout") == 2 and kinds.count("DropConnectLinear") == 2
    res = coach.build_model(ModelConfig(name="resnet", width=4, depth=2, blocks=2), (1, 8, 8), 2, reg)
    ps = [m.p for m in res.modules() if isinstance(m, StochasticDepth)]
    assert ps == [0.125, 0.25, 0.375, 0.5]  # linear decay with depth


def test_fractional_pool_convnet():
    model = coach.build_model(ModelConfig(name="convnet", width=4, pool="fractional"), (1, 16, 16), 2)
    assert model(torch.randn(2, 1, 16, 16)).shape == (2, 2)


def test_a_models_preprocessing_is_its_own_copy():
    """The data's fitted preprocessing is shared by every model built on them; moving one model to
    a GPU (here: to float64, the same in-place move) must leave the data's as it was. It did not:
    the autopilot's cost stage moved it to CUDA and its check stage then failed on CPU inputs."""
    import coach
    from coach.data import load_data
    from coach.nn.own import Own
    cfg = coach.make_config({"data": {"name": "digits"}, "model": {"name": "mlp"}})
    data = load_data(cfg.data)
    coach.build_model(cfg.model, data.input_shape, data.num_classes, cfg.regularize, data.preprocess).double()
    Own(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))).build(
        cfg, data.input_shape, data.num_classes, data.preprocess).double()
    assert all(t.dtype == torch.float32 for t in data.preprocess.state_dict().values())


def test_width_depth_blocks_and_pooling_shape_the_network():
    conv = coach.build_model(ModelConfig(name="convnet", width=6, depth=3, blocks=2), (1, 16, 16), 4)
    convs = [m for m in conv.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [6, 6, 12, 12, 24, 24]  # width doubling per stage, blocks per stage
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in conv.features) == 3
    frac = coach.build_model(ModelConfig(name="convnet", width=6, depth=3, pool="fractional"), (1, 16, 16), 4)
    assert sum(type(m).__name__ == "FractionalMaxPool" for m in frac.features) == 3
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in frac.features)
    mlp = coach.build_model(ModelConfig(name="mlp", width=24, depth=3), (10,), 4)
    assert [m.out_features for m in mlp.features if isinstance(m, torch.nn.Linear)] == [24, 24, 24]
    res = coach.build_model(ModelConfig(name="resnet", width=5, depth=2, blocks=3), (1, 8, 8), 4)
    blocks = [m for m in res.modules() if type(m).__name__ == "BasicBlock"]
    assert len(blocks) == 6 and res.feature_dim == 10
