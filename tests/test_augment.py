"""Tests for voiceprint.data.augment and .channel: SNRs, spectra, decays, frequencies, masks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from voiceprint.config import AugmentConfig
from voiceprint.data.augment import (
    SpecAugment,
    WaveAugmenter,
    add_noise,
    babble,
    coloured_noise,
    reverberate,
    synthetic_rir,
    synthetic_rirs,
)
from voiceprint.data.channel import speed_perturb

SR = 16000


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def speech_like(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    """Amplitude-modulated tones with silent gaps, peak below 0.5."""
    g = gen(seed)
    t = torch.arange(length) / SR
    f0 = 100 + 200 * torch.rand(batch, 1, generator=g)
    tone = sum(torch.sin(2 * math.pi * k * f0 * t) / k for k in range(1, 6))
    envelope = (torch.sin(2 * math.pi * 3 * t) > -0.3).float()
    wave = tone * envelope
    return 0.45 * wave / wave.abs().amax(dim=-1, keepdim=True)


def snr_db(clean: torch.Tensor, noisy: torch.Tensor) -> torch.Tensor:
    noise = (noisy - clean).double()
    return 10 * torch.log10(clean.double().pow(2).mean(-1) / noise.pow(2).mean(-1))


# ---------------------------------------------------------------- add_noise


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_add_noise_reaches_snr_and_keeps_shape(dtype):
    wave = speech_like(4, 8000).to(dtype)
    noise = torch.randn(4, 8000, generator=gen(1)).to(dtype) * torch.tensor(
        [[0.01], [1], [5], [50]]
    )
    target = torch.tensor([-5.0, 0.0, 10.0, 30.0])
    out = add_noise(wave, noise, target)
    assert out.shape == wave.shape and out.dtype == dtype
    assert torch.allclose(snr_db(wave, out).float(), target, atol=0.1)
    out = add_noise(wave, noise, 12.5)  # a scalar SNR applies to every row
    assert torch.allclose(snr_db(wave, out).float(), torch.full((4,), 12.5), atol=0.1)


def test_add_noise_is_safe_for_silence():
    silent = torch.zeros(2, 1000)
    out = add_noise(silent, torch.randn(2, 1000, generator=gen()), torch.tensor([0.0, 20.0]))
    assert torch.isfinite(out).all() and out.abs().max() < 1e-3
    wave = speech_like(2, 1000)
    assert torch.equal(add_noise(wave, torch.zeros(2, 1000), 5.0), wave)
    with pytest.raises(ValueError):
        add_noise(wave, torch.zeros(2, 999), 5.0)


# ---------------------------------------------------------------- coloured noise


@pytest.mark.parametrize("exponent", [0.0, 1.0, 2.0])
def test_coloured_noise_spectral_slope(exponent):
    batch, length = 32, 4096
    noise = coloured_noise((batch, length), exponent, gen(3))
    assert noise.shape == (batch, length) and noise.dtype == torch.float32
    assert torch.allclose(noise.pow(2).mean(-1), torch.ones(batch), atol=1e-4)
    power = torch.fft.rfft(noise.double(), dim=-1).abs().pow(2).mean(0)
    freqs = torch.fft.rfftfreq(length, dtype=torch.float64)
    # fit on log-spaced bands so that every octave weighs the same
    edges = np.unique(np.geomspace(2, length // 2, 40).astype(int))
    log_f = [np.log10(freqs[a:b].mean().item()) for a, b in zip(edges[:-1], edges[1:], strict=True)]
    log_p = [np.log10(power[a:b].mean().item()) for a, b in zip(edges[:-1], edges[1:], strict=True)]
    slope = np.polyfit(log_f, log_p, 1)[0]
    assert slope == pytest.approx(-exponent, abs=0.15)


def test_coloured_noise_per_item_exponent_and_seed():
    exponent = torch.tensor([0.0, 2.0])
    a = coloured_noise((2, 2048), exponent, gen(5))
    b = coloured_noise((2, 2048), exponent, gen(5))
    assert torch.equal(a, b)
    # brown noise is much smoother than white: lag-1 correlation near 1 vs near 0
    lag1 = (a[:, 1:] * a[:, :-1]).mean(-1)
    assert abs(lag1[0].item()) < 0.1 and lag1[1].item() > 0.95


# ---------------------------------------------------------------- babble


def _sine_pool(rows: int, length: int) -> torch.Tensor:
    """Row i is a sine with i+1 whole cycles, times a row-specific gain; rows are orthogonal."""
    t = torch.arange(length) / length
    pool = torch.stack([torch.sin(2 * math.pi * (i + 1) * t) for i in range(rows)])
    return pool * torch.arange(1, rows + 1).unsqueeze(-1) * 0.1


def _talkers(out: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
    """Coefficient of each unit-power pool row in each output row: (count, M)."""
    unit = pool / pool.pow(2).mean(-1, keepdim=True).sqrt()
    return out @ unit.T / unit.pow(2).sum(-1)


def test_babble_sums_three_to_six_distinct_unit_power_talkers():
    pool = _sine_pool(10, 1024)
    out = babble(pool, 50, gen(2))
    assert out.shape == (50, 1024) and out.dtype == pool.dtype
    coef = _talkers(out, pool)
    used = coef.abs() > 0.5
    assert torch.allclose(coef[used], torch.ones(int(used.sum())), atol=1e-4)
    assert torch.allclose(coef[~used], torch.zeros(int((~used).sum())), atol=1e-4)
    counts = used.sum(-1)
    assert counts.min() >= 3 and counts.max() <= 6
    assert len(set(counts.tolist())) > 1  # the number of talkers varies


def test_babble_respects_allowed_mask_and_small_pools():
    pool = _sine_pool(8, 512)
    allowed = torch.ones(20, 8, dtype=torch.bool)
    allowed[:, :4] = False
    coef = _talkers(babble(pool, 20, gen(4), speakers=(3, 3), allowed=allowed), pool)
    assert torch.allclose(coef[:, :4], torch.zeros(20, 4), atol=1e-4)
    assert ((coef[:, 4:].abs() > 0.5).sum(-1) == 3).all()
    # a pool of two rows: both are used, nothing fails
    coef = _talkers(babble(pool[:2], 5, gen(4)), pool[:2])
    assert torch.allclose(coef, torch.ones(5, 2), atol=1e-4)
    with pytest.raises(ValueError):
        babble(pool[:0], 3, gen())


# ---------------------------------------------------------------- reverberation


def _schroeder_rt60(rir: torch.Tensor) -> float:
    """RT60 from the slope of the backward-integrated energy between -5 and -25 dB."""
    energy = rir.double().pow(2).flip(0).cumsum(0).flip(0)
    decay = 10 * torch.log10(energy / energy[0])
    fit = (decay < -5) & (decay > -25)
    t = torch.arange(rir.numel(), dtype=torch.float64)[fit] / SR
    slope = np.polyfit(t.numpy(), decay[fit].numpy(), 1)[0]  # dB per second
    return -60.0 / slope


def test_synthetic_rir_shape_peak_energy_and_decay():
    rir = synthetic_rir(SR, generator=gen(0))
    assert rir.shape == (round(0.8 * SR),) and rir.dtype == torch.float32
    assert rir.pow(2).sum().item() == pytest.approx(1.0, abs=1e-5)
    assert rir.abs().argmax().item() < 0.005 * SR  # direct path within 5 ms
    quarter = rir.numel() // 4
    assert rir[-quarter:].pow(2).sum() < 1e-3 * rir[:quarter].pow(2).sum()
    assert synthetic_rir(SR, generator=gen(0), length=4000).shape == (4000,)


@pytest.mark.parametrize("rt60", [0.3, 0.6])
def test_synthetic_rir_decays_at_requested_rate(rt60):
    rirs = synthetic_rirs(4, SR, (rt60, rt60), gen(1), length=SR)
    estimates = [_schroeder_rt60(r) for r in rirs]
    assert np.median(estimates) == pytest.approx(rt60, rel=0.15)


def test_reverberate_matches_numpy_convolution_and_keeps_energy():
    wave = speech_like(3, 4000).double()
    rirs = synthetic_rirs(3, SR, generator=gen(7), length=2000).double()
    out = reverberate(wave, rirs)
    assert out.shape == wave.shape and out.dtype == torch.float64
    assert torch.allclose(out.pow(2).sum(-1), wave.pow(2).sum(-1), rtol=1e-6)
    for x, h, y in zip(wave.numpy(), rirs.numpy(), out.numpy(), strict=True):
        start = int(np.abs(h).argmax())
        ref = np.convolve(x, h)[start : start + x.size]
        ref *= np.sqrt((x**2).sum() / (ref**2).sum())
        np.testing.assert_allclose(y, ref, atol=1e-9)


def test_reverberate_with_delayed_impulse_is_identity_and_shares_one_rir():
    wave = speech_like(2, 3000)
    delta = torch.zeros(500)
    delta[37] = 0.5  # a delayed, attenuated direct path: aligned and rescaled away
    assert torch.allclose(reverberate(wave, delta), wave, atol=1e-5)


# ---------------------------------------------------------------- speed perturbation


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_perturb_length_and_types(factor):
    x = np.random.default_rng(0).standard_normal(16001).astype(np.float32)
    y = speed_perturb(x, factor)
    assert isinstance(y, np.ndarray) and y.dtype == np.float32
    assert y.shape == (math.ceil(16001 / factor),)
    batch = torch.from_numpy(np.stack([x, -x])).double()
    z = speed_perturb(batch, factor)
    assert isinstance(z, torch.Tensor) and z.dtype == torch.float64
    assert z.shape == (2, math.ceil(16001 / factor))
    np.testing.assert_allclose(z[0].numpy(), y, atol=1e-5)
    np.testing.assert_allclose(z[1].numpy(), -z[0].numpy())
    assert np.array_equal(speed_perturb(x, 1.0), x)


@pytest.mark.parametrize("factor", [0.9, 1.1, 1.25])
def test_speed_perturb_scales_a_sines_frequency(factor):
    t = np.arange(SR) / SR
    y = speed_perturb(np.sin(2 * np.pi * 1000 * t).astype(np.float32), factor)
    spectrum = np.abs(np.fft.rfft(y * np.hanning(y.size), n=8 * SR))
    peak_hz = np.argmax(spectrum) * SR / (8 * SR)
    assert peak_hz == pytest.approx(1000 * factor, abs=1.0)
    # amplitude preserved away from the edges
    assert np.abs(y[500:-500]).max() == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_perturb_matches_a_reference_resampler(factor):
    signal = pytest.importorskip("scipy.signal")
    x = np.random.default_rng(1).standard_normal(8000)
    x = signal.sosfiltfilt(signal.butter(8, 0.6, output="sos"), x)  # well inside both bands
    y = speed_perturb(x, factor)
    up, down = (10, 9) if factor == 0.9 else (10, 11)
    ref = signal.resample_poly(x, up, down)
    assert y.shape == ref.shape
    err = y[200:-200] - ref[200:-200]
    assert np.sqrt((err**2).mean() / (ref**2).mean()) < 3e-3  # better than -50 dB


def test_speed_perturb_suppresses_aliasing_when_speeding_up():
    t = np.arange(SR) / SR
    tone = np.sin(2 * np.pi * 7800 * t)  # 1.1x would be 8580 Hz: above the new Nyquist
    y = speed_perturb(tone, 1.1)
    assert np.sqrt((y[500:-500] ** 2).mean()) < 1e-3
    with pytest.raises(ValueError):
        speed_perturb(tone, 0.0)


# ---------------------------------------------------------------- SpecAugment


def _runs(mask_1d: torch.Tensor) -> list[int]:
    """Lengths of the runs of True in a 1-D bool tensor."""
    runs, current = [], 0
    for value in mask_1d.tolist() + [False]:
        if value:
            current += 1
        elif current:
            runs.append(current)
            current = 0
    return runs


def test_specaugment_only_in_training_and_respects_widths():
    feats = torch.randn(64, 50, 20, generator=gen()) + 5.0  # never exactly zero
    aug = SpecAugment(time_masks=1, time_width=7, freq_masks=1, freq_width=4, seed=1)
    aug.eval()
    assert torch.equal(aug(feats), feats)
    aug.train()
    out = aug(feats)
    assert out.shape == feats.shape and out.dtype == feats.dtype
    zero = out == 0
    assert torch.equal(out[~zero], feats[~zero])
    time_masked = zero.all(dim=2)  # (B, T) frames zeroed over every bin
    freq_masked = zero.all(dim=1)  # (B, F) bins zeroed over every frame
    assert torch.equal(zero, time_masked.unsqueeze(2) | freq_masked.unsqueeze(1))
    widths_t = [w for row in time_masked for w in _runs(row)]
    widths_f = [w for row in freq_masked for w in _runs(row)]
    assert max(widths_t) == 7 and max(widths_f) == 4  # reached, never exceeded
    assert all(len(_runs(row)) <= 1 for row in time_masked)
    assert not torch.equal(time_masked[0], time_masked[1]) or not torch.equal(
        time_masked[2], time_masked[3]
    )


def test_specaugment_keeps_masks_inside_valid_frames():
    feats = torch.ones(40, 30, 8)
    lengths = torch.randint(1, 31, (40,), generator=gen(2))
    aug = SpecAugment(time_masks=3, time_width=10, freq_masks=0, freq_width=8, seed=0).train()
    out = aug(feats, lengths)
    frames = torch.arange(30)
    padded = frames.unsqueeze(0) >= lengths.unsqueeze(1)
    assert (out[padded] == 1).all()
    assert (out == 0).any()
    cfg = AugmentConfig(spec_time_masks=2, spec_time_width=5, spec_freq_masks=3, spec_freq_width=2)
    built = SpecAugment.from_config(cfg)
    assert (built.time_masks, built.time_width, built.freq_masks, built.freq_width) == (2, 5, 3, 2)


# ---------------------------------------------------------------- WaveAugmenter


def _cfg(**kw) -> AugmentConfig:
    return AugmentConfig(**kw)


def test_wave_augmenter_identity_without_probabilities_or_in_eval():
    wave = speech_like(4, 4000)
    assert torch.equal(WaveAugmenter(_cfg()).train()(wave), wave)
    full = WaveAugmenter(_cfg(noise_prob=1.0, reverb_prob=1.0)).eval()
    assert torch.equal(full(wave), wave)


def test_wave_augmenter_reproducible_and_differs_across_items():
    cfg = _cfg(noise_prob=0.5, babble_prob=0.3, reverb_prob=0.5)
    wave = speech_like(1, 4000).expand(8, -1).contiguous()  # eight identical items
    a = WaveAugmenter(cfg, SR, seed=3).train()(wave)
    b = WaveAugmenter(cfg, SR, seed=3).train()(wave)
    c = WaveAugmenter(cfg, SR, seed=4).train()(wave)
    assert torch.equal(a, b) and not torch.equal(a, c)
    distinct = {tuple(row[:64].tolist()) for row in a}
    assert len(distinct) >= 6
    assert a.shape == wave.shape and a.dtype == torch.float32 and torch.isfinite(a).all()


def test_wave_augmenter_noise_only_hits_the_configured_snr():
    cfg = _cfg(noise_prob=1.0, noise_snr_db=(10.0, 10.0))
    wave = speech_like(6, 4000)
    out = WaveAugmenter(cfg, SR, seed=0).train()(wave)
    assert torch.allclose(snr_db(wave, out).float(), torch.full((6,), 10.0), atol=0.1)


def test_wave_augmenter_reverb_only_keeps_energy_and_length():
    wave = speech_like(3, 6000)
    out = WaveAugmenter(_cfg(reverb_prob=1.0), SR, seed=0).train()(wave)
    assert out.shape == wave.shape
    assert not torch.allclose(out, wave, atol=1e-3)
    assert torch.allclose(out.pow(2).sum(-1), wave.pow(2).sum(-1), rtol=1e-3)


def test_wave_augmenter_babble_excludes_own_speaker():
    pool = _sine_pool(6, 1024)
    labels = torch.tensor([0, 1, 2, 3])
    pool_labels = torch.tensor([0, 0, 1, 1, 2, 2])
    wave = torch.zeros(4, 1024)
    wave[:, 0] = 0.5  # an impulse: the mixture is the babble plus one known sample
    cfg = _cfg(babble_prob=1.0, noise_snr_db=(0.0, 0.0))
    out = WaveAugmenter(cfg, SR, seed=1).train()(wave, pool, labels=labels, pool_labels=pool_labels)
    coef = _talkers(out - wave, pool)
    own = labels.unsqueeze(1) == pool_labels.unsqueeze(0)
    assert coef[own].abs().max() < 1e-3
    assert ((coef.abs() > 1e-3) & ~own).sum(-1).min() >= 3
    assert torch.allclose(snr_db(wave, out).float(), torch.zeros(4), atol=0.1)


def test_wave_augmenter_batch_babble_is_finite_and_peak_safe():
    cfg = _cfg(noise_prob=0.5, babble_prob=0.5, reverb_prob=0.5, noise_snr_db=(-10.0, -5.0))
    wave = speech_like(6, 4000) * 2.0  # peaks near 0.9
    wave[0] = 0.0  # a silent crop
    out = WaveAugmenter(cfg, SR, seed=2).train()(wave)
    assert torch.isfinite(out).all()
    assert out.abs().amax(-1).max() <= 1.0 + 1e-6
    assert out[0].abs().max() < 1e-3
    half = WaveAugmenter(cfg, SR, seed=2).train()(wave.double())
    assert half.dtype == torch.float64
