import numpy as np
import pytest
import torch

from coach.data.preprocess import Preprocessor, fit_preprocessor
from coach.errors import UserError


@pytest.fixture
def images():
    g = torch.Generator().manual_seed(0)
    return torch.rand(500, 3, 4, 4, generator=g) * torch.tensor([1.0, 2.0, 0.5]).view(1, 3, 1, 1) + 0.3


def test_none_is_identity(images):
    assert torch.equal(fit_preprocessor("none", images)(images), images)


def test_mean_image(images):
    out = fit_preprocessor("mean_image", images)(images)
    assert out.mean(0).abs().max() < 1e-5  # every pixel of the mean image removed


def test_channel_mean_and_standardize(images):
    out = fit_preprocessor("channel_mean", images)(images)
    assert out.mean(dim=(0, 2, 3)).abs().max() < 1e-5
    assert not torch.allclose(out.mean(0), torch.zeros_like(out.mean(0)), atol=1e-3)  # per channel, not pixel
    out = fit_preprocessor("standardize", images)(images)
    np.testing.assert_allclose(out.transpose(0, 1).reshape(3, -1).std(1).numpy(), 1.0, atol=1e-3)


def test_pca_matches_sklearn(images):
    from sklearn.decomposition import PCA

    flat = images.reshape(len(images), -1).double().numpy()
    pre = fit_preprocessor("pca", images, components=5)
    ours = pre(images).double().numpy()
    ref = PCA(5).fit_transform(flat)
    assert ours.shape == (500, 5) and pre.output_shape == (5,)
    for k in range(5):  # components are defined up to sign
        assert min(np.abs(ours[:, k] - ref[:, k]).max(), np.abs(ours[:, k] + ref[:, k]).max()) < 1e-3


def test_pca_variance_fraction(images):
    pre = fit_preprocessor("pca", images, components=0.9)
    flat = images.reshape(len(images), -1).double()
    evals = torch.linalg.eigvalsh(torch.cov(flat.T)).flip(0)
    k = pre.output_shape[0]
    assert (evals[:k].sum() / evals.sum()) >= 0.9 > (evals[: k - 1].sum() / evals.sum())
    with pytest.raises(UserError, match="pca_components"):
        fit_preprocessor("pca", images, components=2.5)


def test_zca_whitens_and_keeps_shape(images):
    pre = fit_preprocessor("zca", images, epsilon=1e-6)
    out = pre(images)
    assert out.shape == images.shape
    cov = torch.cov(out.reshape(len(out), -1).double().T)
    assert torch.allclose(cov, torch.eye(48, dtype=torch.float64), atol=2e-2)


def test_fitted_on_train_only_and_round_trips(images):
    train, val = images[:400], images[400:] + 5.0
    pre = fit_preprocessor("standardize", train)
    assert pre(val).mean() > 3  # val statistics were not used
    for mode, k in (("standardize", None), ("pca", 4), ("zca", None)):
        p = fit_preprocessor(mode, train, components=k)
        q = Preprocessor(mode, tuple(train.shape[1:]), components=k)
        q.load_state_dict(p.state_dict())
        assert torch.allclose(p(val), q(val))
