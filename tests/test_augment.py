"""Batched augmentation: each transform checked against explicit per-sample operations."""
import pytest
import torch
import torch.nn.functional as F

from coach.config import AugmentConfig
from coach.data.augment import (Augment, brightness_contrast, colour_pca, cutmix, cutout, hflip, mixup, pca_colour,
                                random_crop, random_resized_crop, shift_1d)
from coach.errors import UserError


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def x():
    return torch.rand(64, 3, 8, 8, generator=gen(1))


def test_hflip_per_sample(x):
    out = hflip(x, gen())
    flipped = [(o == s.flip(-1)).all().item() for o, s in zip(out, x)]
    kept = [(o == s).all().item() for o, s in zip(out, x)]
    assert all(f or k for f, k in zip(flipped, kept)) and 10 < sum(flipped) < 54


def test_random_crop_equals_explicit_crops(x):
    out = random_crop(x, 2, gen())
    padded = F.pad(x, (2, 2, 2, 2))
    offsets = set()
    for o, p in zip(out, padded):
        matches = [(dy, dx) for dy in range(5) for dx in range(5) if torch.equal(o, p[:, dy:dy + 8, dx:dx + 8])]
        assert matches
        offsets.add(matches[0])
    assert len(offsets) > 5  # independent offsets per sample


def test_resized_crop_full_scale_is_identity(x):
    out = random_resized_crop(x, (1.0, 1.0), (1.0, 1.0), gen())
    assert torch.allclose(out, x, atol=1e-5)
    assert random_resized_crop(x, (0.3, 0.6), (0.75, 1.33), gen()).shape == x.shape


def test_brightness_contrast(x):
    out = brightness_contrast(x, 0.2, 0.0, gen())
    shift = (out - x).view(64, -1)
    assert torch.allclose(shift, shift[:, :1].expand_as(shift), atol=1e-6) and shift.abs().max() <= 0.2
    out = brightness_contrast(x, 0.0, 0.5, gen())
    assert torch.allclose(out.mean((1, 2, 3)), x.mean((1, 2, 3)), atol=1e-5)  # contrast keeps the mean


def test_pca_colour_moves_along_principal_axes(x):
    vals, vecs = colour_pca(x)
    out = pca_colour(x, vals, vecs, 0.1, gen())
    delta = (out - x)[:, :, 0, 0]  # the same shift for every pixel of an image
    assert torch.allclose((out - x), delta[:, :, None, None].expand_as(x), atol=1e-6)
    coords = delta @ vecs  # in the eigenbasis each coordinate is alpha_i * sqrt(lambda_i)
    assert (coords.std(0) / (vals + 1e-12)).sub(0.1).abs().max() < 0.05


def test_cutout_zeroes_one_square(x):
    out = cutout(x + 1, 3, gen())
    zeros = (out == 0).all(1)  # (N, H, W)
    assert all(1 <= z.sum() <= 9 for z in zeros)


def test_mixup_and_cutmix_labels(x):
    y = torch.arange(64)
    xm, ya, yb, lam = mixup(x, y, 0.4, gen())
    assert torch.allclose(xm, lam * x + (1 - lam) * x[yb])
    xc, ya, yb, lam = cutmix(x, y, 1.0, gen())
    from_other = (xc != x).any(1).float().mean().item()
    assert 0 <= lam <= 1 and abs(from_other - (1 - lam)) < 0.05


def test_shift_1d_is_a_roll():
    s = torch.arange(20.0).view(2, 1, 10)
    out = shift_1d(s, 3, gen())
    for o, r in zip(out, s):
        assert any(torch.equal(o, torch.roll(r, k, dims=-1)) for k in range(-3, 4))


def test_pipeline_is_reproducible_and_checks_kind(x):
    aug = Augment(AugmentConfig(hflip=True, crop_padding=2, cutout=2, brightness=0.1), "image", x)
    a = aug(x, torch.zeros(64, dtype=torch.long), gen(5))[0]
    b = aug(x, torch.zeros(64, dtype=torch.long), gen(5))[0]
    assert torch.equal(a, b) and aug.active and not Augment(AugmentConfig(), "image").active
    with pytest.raises(UserError, match="augment.hflip: only for images"):
        Augment(AugmentConfig(hflip=True), "signal")
