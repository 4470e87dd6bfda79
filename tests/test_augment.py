"""Batched augmentation: each transform checked against explicit per-sample operations."""
import pytest
import torch
import torch.nn.functional as F

from coach.config import AugmentConfig
from coach.data.augment import (Augment, beta, brightness_contrast, colour_pca, cutmix, cutout, hflip, mixup, pca_colour,
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
    # a shift per image drawn from U(-0.2, 0.2) (std 0.115), not zero and not one for all
    assert 0.07 < shift[:, 0].std() < 0.16 and (shift[:, 0].abs() > 1e-3).float().mean() > 0.9
    out = brightness_contrast(x, 0.0, 0.5, gen())
    assert torch.allclose(out.mean((1, 2, 3)), x.mean((1, 2, 3)), atol=1e-5)  # contrast keeps the mean
    centred_in, centred_out = (t - t.mean((1, 2, 3), keepdim=True) for t in (x, out))
    factor = (centred_out.flatten(1) / centred_in.flatten(1)).median(1).values  # per image
    assert torch.allclose(centred_out, factor.view(-1, 1, 1, 1) * centred_in, atol=1e-5)
    assert factor.min() >= 0.5 - 1e-4 and factor.max() <= 1.5 + 1e-4 and factor.std() > 0.15  # U(0.5, 1.5)


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
    assert 0 < lam < 1 and not torch.equal(ya, yb) and not torch.allclose(xm, x)
    assert torch.allclose(xm, lam * x + (1 - lam) * x[yb])
    xc, ya, yb, lam = cutmix(x, y, 1.0, gen())
    pasted = (xc != x).any(1)  # (N, H, W): where the other image shows
    assert 0 < lam < 1 and abs(pasted.float().mean().item() - (1 - lam)) < 0.05
    mask = pasted[:, None].expand_as(x)
    assert torch.equal(xc[mask], x[yb][mask])  # the box comes from the paired image


def test_mixup_and_cutmix_draw_from_the_generator_only(x):
    """lam comes from g (checkpointed with the run), not from the global RNG."""
    y = torch.arange(64)
    for op, alpha in ((mixup, 0.4), (cutmix, 1.0)):
        torch.manual_seed(1)
        a = op(x, y, alpha, gen(3))
        torch.manual_seed(2)
        b = op(x, y, alpha, gen(3))
        assert a[3] == b[3] and torch.equal(a[0], b[0]) and torch.equal(a[2], b[2])
        assert op(x, y, alpha, gen(4))[3] != a[3]


def test_mixup_and_cutmix_together_alternate_per_batch(x):
    aug = Augment(AugmentConfig(mixup=0.4, cutmix=1.0), "image", x)
    y, g = torch.arange(64), gen(0)
    kinds = []
    for _ in range(40):
        xm, ya, yb, lam = aug(x, y, g)
        # cutmix pastes pixels of the paired image; mixup blends, giving pixels of neither
        kinds.append("cutmix" if ((xm == x) | (xm == x[yb])).all() else "mixup")
    assert 10 < kinds.count("cutmix") < 30


def test_beta_draws_have_the_beta_moments():
    g = gen(0)
    draws = torch.tensor([beta(0.4, g) for _ in range(4000)])
    # Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1)) = 0.1389 for a = 0.4
    assert abs(draws.mean() - 0.5) < 0.02 and abs(draws.var() - 1 / (4 * 1.8)) < 0.01
    assert draws.min() >= 0 and draws.max() <= 1


def test_shift_1d_is_a_roll():
    s = torch.arange(10.0).repeat(200, 1).view(200, 1, 10)
    out = shift_1d(s, 3, gen())
    shifts = []
    for o, r in zip(out, s):
        ks = [k for k in range(-3, 4) if torch.equal(o, torch.roll(r, k, dims=-1))]
        assert len(ks) == 1
        shifts += ks
    assert set(shifts) == set(range(-3, 4))  # every allowed shift, drawn independently per signal


def test_pipeline_is_reproducible_and_checks_kind(x):
    aug = Augment(AugmentConfig(hflip=True, crop_padding=2, cutout=2, brightness=0.1), "image", x)
    y = torch.zeros(64, dtype=torch.long)
    g = gen(5)
    state = g.get_state()
    a = aug(x, y, g)[0]
    g.set_state(state)  # a checkpoint's generator state reproduces the batch exactly
    b = aug(x, y, g)[0]
    assert torch.equal(a, b) and aug.active and not Augment(AugmentConfig(), "image").active
    changed = (a != x).flatten(1).any(1)
    assert changed.all()  # brightness alone moves every image
    assert not torch.equal(aug(x, y, gen(6))[0], a)  # another state, other draws
    with pytest.raises(UserError, match="augment.hflip: only for images"):
        Augment(AugmentConfig(hflip=True), "signal")


def test_resized_crop_zooms_into_a_window_of_the_asked_area():
    """A ramp image (value = column): a crop of a quarter of the area (half the side), resized back,
    is a ramp half as steep, starting where its window starts (different per sample). A crop that
    did nothing would keep the slope of 1."""
    ramp = torch.arange(16.0).repeat(64, 1, 16, 1)  # (64, 1, 16, 16)
    out = random_resized_crop(ramp, (0.25, 0.25), (1.0, 1.0), gen())
    slope = (out[..., 4:12, 5:11] - out[..., 4:12, 4:10]).mean((1, 2, 3))
    assert torch.allclose(slope, torch.full_like(slope, 0.5), atol=0.02)
    starts = out[:, 0, 8, 0]
    assert starts.min() >= -0.5 and starts.max() <= 8.5 and starts.std() > 1.0  # windows anywhere, per sample


def test_amplitude_scale_multiplies_each_signal_by_its_own_factor():
    s = torch.rand(200, 1, 40, generator=gen(2)) + 0.5
    out = Augment(AugmentConfig(scale=0.3), "signal")(s, torch.zeros(200, dtype=torch.long), gen(3))[0]
    factor = (out / s).flatten(1)
    assert torch.allclose(factor, factor[:, :1].expand_as(factor), atol=1e-5)  # one factor per signal
    f = factor[:, 0]
    assert f.min() >= 0.7 - 1e-5 and f.max() <= 1.3 + 1e-5 and f.std() > 0.12  # U(0.7, 1.3): std 0.17
