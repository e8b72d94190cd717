"""Waveform and feature augmentation for speaker-embedding training, synthesised in torch.

No noise or room-impulse corpora are needed: additive noise is coloured Gaussian noise
(1/f^a spectrum) or babble summed from other training utterances, reverberation uses
synthetic room impulse responses (RIRs), and speed perturbation resamples whole utterances
offline to create new speakers (:mod:`voiceprint.data.channel`, with the telephone band).
Everything is batched, works on CPU, and draws its random numbers from an explicit
``torch.Generator`` so a fixed seed reproduces a run.

Shapes: waveforms are ``(B, N)`` float tensors in samples; features are ``(B, T, F)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from voiceprint.config import AugmentConfig
from voiceprint.data.channel import telephone_band

_EPS = 1e-10  # power floor (about -100 dB re full scale): keeps silent input finite


def _as_batch(values: Tensor | float, batch: int, like: Tensor) -> Tensor:
    """A per-item value of shape (B,) on ``like``'s device and dtype."""
    out = torch.as_tensor(values, dtype=like.dtype, device=like.device)
    return out.expand(batch) if out.ndim == 0 else out


def _uniform(count: int, low: float, high: float, generator: torch.Generator | None) -> Tensor:
    """``count`` float32 draws from U[low, high) on the generator's device."""
    device = generator.device if generator is not None else None
    return low + (high - low) * torch.rand(count, generator=generator, device=device)


def _power(x: Tensor) -> Tensor:
    """Mean square over the last axis: (B, N) -> (B,)."""
    return x.pow(2).mean(dim=-1)


def add_noise(wave: Tensor, noise: Tensor, snr_db: Tensor | float) -> Tensor:
    """Mix ``noise`` into ``wave`` at a signal-to-noise ratio measured over the whole crop.

    wave, noise: (B, N); snr_db: (B,) or a scalar, in dB. The noise is scaled so that
    ``10 log10(mean(wave^2) / mean(scaled_noise^2)) == snr_db``. Powers are floored at
    1e-10, so a silent crop gets (almost) silent noise and silent noise adds nothing:
    the result is always finite. Returns (B, N) in ``wave``'s dtype.
    """
    if wave.shape != noise.shape:
        raise ValueError(f"wave {tuple(wave.shape)} and noise {tuple(noise.shape)} differ")
    noise = noise.to(wave.dtype)
    snr = _as_batch(snr_db, wave.shape[0], wave)
    signal_power = _power(wave).clamp_min(_EPS)
    noise_power = _power(noise).clamp_min(_EPS)
    gain = torch.sqrt(signal_power / (noise_power * torch.pow(10.0, snr / 10.0)))
    return wave + gain.unsqueeze(-1) * noise


def coloured_noise(
    shape: tuple[int, int],
    exponent: Tensor | float,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Gaussian noise whose power spectrum falls as 1/f^exponent, with unit mean power.

    shape: (B, N); exponent: (B,) or a scalar (0 white, 1 pink, 2 brown). White noise is
    shaped in the frequency domain by f^(-exponent/2) (the DC bin is removed) and each row
    is rescaled to mean square 1. Returns float32 (B, N) on the generator's device.
    """
    batch, length = shape
    device = generator.device if generator is not None else None
    white = torch.randn(batch, length, generator=generator, device=device)
    spectrum = torch.fft.rfft(white, dim=-1)
    freqs = torch.fft.rfftfreq(length, device=white.device)  # cycles per sample, 0..0.5
    exp = _as_batch(exponent, batch, white).unsqueeze(-1)
    shaping = torch.zeros(batch, freqs.numel(), device=white.device)
    shaping[:, 1:] = freqs[1:].pow(-exp / 2.0)
    shaped = torch.fft.irfft(spectrum * shaping, n=length, dim=-1)
    return shaped / _power(shaped).clamp_min(_EPS).sqrt().unsqueeze(-1)


def babble(
    pool: Tensor,
    count: int,
    generator: torch.Generator | None = None,
    *,
    speakers: tuple[int, int] = (3, 6),
    allowed: Tensor | None = None,
) -> Tensor:
    """Babble noise: each of ``count`` rows sums 3-6 random crops from ``pool``.

    pool: (M, N) waveform crops of *other* training utterances, supplied by the caller
    (for instance the other items of the current batch, or a buffer of recent batches).
    Each crop is scaled to unit power before summing, so every talker is equally loud;
    the level of the sum does not matter because ``add_noise`` sets the SNR.
    speakers: inclusive range of how many crops make one babble row (capped at what is
    available). allowed: optional (count, M) bool mask of which pool rows each output row
    may use, e.g. to exclude the crop's own speaker. Returns (count, N) in pool's dtype.
    """
    if pool.ndim != 2 or pool.shape[0] == 0:
        raise ValueError(f"babble pool must be a non-empty (M, N) tensor, got {tuple(pool.shape)}")
    low, high = speakers
    if not 1 <= low <= high:
        raise ValueError(f"speakers must satisfy 1 <= low <= high, got {speakers}")
    rows = pool.shape[0]
    take = min(high, rows)
    scores = torch.rand(count, rows, generator=generator, device=_device(generator))
    scores = scores.to(pool.device)
    if allowed is not None:
        allowed = allowed.to(pool.device)
        scores = scores.masked_fill(~allowed, 2.0)  # disallowed rows sort last
    order = scores.argsort(dim=-1)[:, :take]  # (count, take) distinct rows
    talkers = torch.randint(low, high + 1, (count,), generator=generator, device=_device(generator))
    use = torch.arange(take, device=pool.device) < talkers.to(pool.device).unsqueeze(-1)
    if allowed is not None:
        use &= allowed.gather(1, order)
    unit = pool / _power(pool).clamp_min(_EPS).sqrt().unsqueeze(-1)
    return (unit[order] * use.unsqueeze(-1).to(pool.dtype)).sum(dim=1)


def _device(generator: torch.Generator | None) -> torch.device | None:
    return generator.device if generator is not None else None


def synthetic_rirs(
    count: int,
    sample_rate: int,
    rt60: tuple[float, float] = (0.2, 0.8),
    generator: torch.Generator | None = None,
    *,
    length: int | None = None,
) -> Tensor:
    """``count`` synthetic room impulse responses, float32 (count, L), each unit energy.

    Each RIR has a direct-path impulse of amplitude 1 after a 0-5 ms propagation delay,
    3-6 early reflections in the next 2-40 ms, and a Gaussian tail whose energy decays by
    60 dB over a reverberation time drawn from U[rt60] seconds, starting at the first
    reflection. Amplitudes are bounded below the direct path, so the direct path is
    always the peak. L defaults to the longest rt60 in samples.
    """
    lo, hi = rt60
    if not 0.0 < lo <= hi:
        raise ValueError(f"rt60 range must satisfy 0 < low <= high, got {rt60}")
    length = length or max(1, round(hi * sample_rate))
    dev = _device(generator)
    times = torch.arange(length, device=dev, dtype=torch.float32) / sample_rate  # seconds
    t60 = _uniform(count, lo, hi, generator).unsqueeze(-1)  # (count, 1)
    direct = (_uniform(count, 0.0, 0.005, generator) * sample_rate).long().clamp_max(length - 1)
    first = direct + (_uniform(count, 0.002, 0.006, generator) * sample_rate).long()
    after = times.unsqueeze(0) - direct.unsqueeze(-1).float() / sample_rate  # time since direct
    envelope = torch.exp(-3.0 * math.log(10.0) * after.clamp_min(0.0) / t60)  # amplitude
    tail = 0.3 * envelope * torch.randn(count, length, generator=generator, device=dev)
    index = torch.arange(length, device=dev).unsqueeze(0)
    rir = torch.where(index >= first.unsqueeze(-1), tail, torch.zeros_like(tail))
    n_refl = 6
    delays = (
        first.unsqueeze(-1)
        + (_uniform(count * n_refl, 0.0, 0.034, generator).view(count, n_refl) * sample_rate).long()
    )
    signs = torch.randint(0, 2, (count, n_refl), generator=generator, device=dev) * 2.0 - 1.0
    gains = _uniform(count * n_refl, 0.2, 0.7, generator).view(count, n_refl) * signs
    keep = torch.arange(n_refl, device=dev) < torch.randint(
        3, n_refl + 1, (count, 1), generator=generator, device=dev
    )
    delays = delays.clamp_max(length - 1)
    gains = gains * envelope.gather(1, delays) * keep
    rir = rir.scatter_add(1, delays, gains).clamp(-0.9, 0.9)
    rir = rir.scatter(1, direct.unsqueeze(-1), torch.ones(count, 1, device=dev))
    return rir / rir.pow(2).sum(dim=-1, keepdim=True).sqrt()


def synthetic_rir(
    sample_rate: int,
    rt60: tuple[float, float] = (0.2, 0.8),
    generator: torch.Generator | None = None,
    *,
    length: int | None = None,
) -> Tensor:
    """One synthetic room impulse response, float32 (L,); see ``synthetic_rirs``."""
    return synthetic_rirs(1, sample_rate, rt60, generator, length=length)[0]


def reverberate(wave: Tensor, rir: Tensor) -> Tensor:
    """Convolve each row of ``wave`` with its RIR by FFT, keeping length and energy.

    wave: (B, N); rir: (B, L) or (L,) shared by all rows. The output is aligned to each
    RIR's direct path (its largest-magnitude sample), so speech does not shift in time,
    cut to N samples, and rescaled to the input row's energy. Returns (B, N), wave's dtype.
    """
    batch, length = wave.shape
    rir = rir.to(device=wave.device, dtype=wave.dtype)
    if rir.ndim == 1:
        rir = rir.expand(batch, -1)
    n_fft = 1 << (length + rir.shape[-1] - 1 - 1).bit_length()
    full = torch.fft.irfft(
        torch.fft.rfft(wave, n=n_fft, dim=-1) * torch.fft.rfft(rir, n=n_fft, dim=-1),
        n=n_fft,
        dim=-1,
    )
    start = rir.abs().argmax(dim=-1, keepdim=True)  # (B, 1) direct-path delay
    out = full.gather(1, start + torch.arange(length, device=wave.device))
    gain = torch.sqrt(_power(wave) / _power(out).clamp_min(_EPS))
    return out * gain.unsqueeze(-1)


class SpecAugment(nn.Module):
    """Time and frequency masking on features (B, T, F), applied in training mode only.

    Each of ``time_masks`` masks zeroes a run of w ~ U{0..time_width} consecutive frames;
    each of ``freq_masks`` zeroes w ~ U{0..freq_width} consecutive feature bins, drawn
    independently per item. Zero is the mean of mean-normalised features. With ``lengths``
    (B,) valid frame counts, time masks fall inside the valid frames only.
    """

    def __init__(
        self,
        time_masks: int = 1,
        time_width: int = 10,
        freq_masks: int = 1,
        freq_width: int = 8,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.time_masks, self.time_width = time_masks, time_width
        self.freq_masks, self.freq_width = freq_masks, freq_width
        self.generator = torch.Generator().manual_seed(seed)

    @classmethod
    def from_config(cls, cfg: AugmentConfig, seed: int = 0) -> SpecAugment:
        return cls(
            cfg.spec_time_masks, cfg.spec_time_width, cfg.spec_freq_masks, cfg.spec_freq_width, seed
        )

    def _mask(self, batch: int, size: int, extent: Tensor, count: int, width: int) -> Tensor:
        """(batch, size) bool: union of ``count`` random runs inside [0, extent)."""
        widths = torch.randint(0, width + 1, (batch, count), generator=self.generator)
        widths = torch.minimum(widths, extent.unsqueeze(-1))
        room = (extent.unsqueeze(-1) - widths + 1).float()
        starts = (torch.rand(batch, count, generator=self.generator) * room).long()
        pos = torch.arange(size).view(1, 1, -1)
        inside = (pos >= starts.unsqueeze(-1)) & (pos < (starts + widths).unsqueeze(-1))
        return inside.any(dim=1)

    def forward(self, feats: Tensor, lengths: Tensor | None = None) -> Tensor:
        if not self.training:
            return feats
        batch, frames, dims = feats.shape
        mask = torch.zeros(batch, frames, dims, dtype=torch.bool)
        if self.time_masks > 0 and self.time_width > 0:
            valid = torch.full((batch,), frames) if lengths is None else lengths.cpu().long()
            valid = valid.clamp(0, frames)
            time = self._mask(batch, frames, valid, self.time_masks, self.time_width)
            mask |= time.unsqueeze(-1)
        if self.freq_masks > 0 and self.freq_width > 0:
            extent = torch.full((batch,), dims)
            freq = self._mask(batch, dims, extent, self.freq_masks, self.freq_width)
            mask |= freq.unsqueeze(1)
        return feats.masked_fill(mask.to(feats.device), 0.0)

    def extra_repr(self) -> str:
        return (
            f"time_masks={self.time_masks}, time_width={self.time_width}, "
            f"freq_masks={self.freq_masks}, freq_width={self.freq_width}"
        )


def augments_waves(cfg: AugmentConfig) -> bool:
    """Whether ``cfg`` turns on any wave augmentation (noise, babble, reverberation,
    telephone channel or level)."""
    return (
        max(cfg.noise_prob, cfg.babble_prob, cfg.reverb_prob, cfg.telephone_prob, cfg.gain_prob) > 0
    )


class WaveAugmenter(nn.Module):
    """Per-item reverberation, additive noise, channel and level on training crops (B, N).

    In training mode each item independently: is reverberated with a fresh synthetic RIR
    with probability ``cfg.reverb_prob``; then gets babble with probability
    ``cfg.babble_prob`` or else coloured noise (exponent ~ U[0, 2]) with probability
    ``cfg.noise_prob`` (the two are exclusive; if the probabilities sum above 1 they are
    scaled to sum to 1), at an SNR ~ U[cfg.noise_snr_db] dB; then goes through a
    telephone channel (:func:`telephone_band`) with probability ``cfg.telephone_prob``;
    then gets a gain ~ U[cfg.gain_db] dB with probability ``cfg.gain_prob``. An item whose
    peak then exceeds max(1, its input peak) is scaled down to it. In eval mode, or with every
    probability 0, the input is returned unchanged. Random draws come from a generator
    seeded by ``seed``, so two augmenters with the same seed produce the same batches.
    """

    def __init__(self, cfg: AugmentConfig, sample_rate: int = 16000, seed: int = 0) -> None:
        super().__init__()
        self.cfg = cfg
        self.sample_rate = sample_rate
        self.generator = torch.Generator().manual_seed(seed)

    @property
    def active(self) -> bool:
        return self.training and augments_waves(self.cfg)

    def forward(
        self,
        wave: Tensor,
        babble_pool: Tensor | None = None,
        *,
        labels: Tensor | None = None,
        pool_labels: Tensor | None = None,
    ) -> Tensor:
        """wave: (B, N). babble_pool: (M, N) crops of other utterances; when None the other
        items of the batch are the pool. labels (B,) and pool_labels (M,) speaker ids, when
        given, keep an item's own speaker out of its babble. Returns (B, N), wave's dtype."""
        if not self.active:
            return wave
        batch, length = wave.shape
        work = wave if wave.dtype == torch.float64 else wave.float()
        out = work.clone()
        gen, cfg = self.generator, self.cfg

        reverb = torch.rand(batch, generator=gen) < cfg.reverb_prob
        if reverb.any():
            rows = reverb.nonzero().squeeze(-1)
            rirs = synthetic_rirs(rows.numel(), self.sample_rate, generator=gen)
            idx = rows.to(wave.device)
            out[idx] = reverberate(out[idx], rirs)

        total = cfg.noise_prob + cfg.babble_prob
        scale = max(1.0, total)
        draw = torch.rand(batch, generator=gen)
        use_babble = draw < cfg.babble_prob / scale
        use_noise = ~use_babble & (draw < total / scale)
        snr = _uniform(batch, *cfg.noise_snr_db, gen).to(device=wave.device, dtype=work.dtype)
        noise = torch.zeros_like(out)
        if use_noise.any():
            rows = use_noise.nonzero().squeeze(-1)
            exponent = _uniform(rows.numel(), 0.0, 2.0, gen)
            shaped = coloured_noise((rows.numel(), length), exponent, gen)
            noise[rows.to(wave.device)] = shaped.to(noise)
        if use_babble.any():
            rows = use_babble.nonzero().squeeze(-1)
            pool, allowed = self._pool(work, babble_pool, labels, pool_labels)
            if pool.shape[0] > 0 and allowed[rows].any():
                talk = babble(pool.to(work.dtype), rows.numel(), gen, allowed=allowed[rows])
                noise[rows.to(wave.device)] = talk.to(noise)
        mixed = use_noise | use_babble
        if mixed.any():
            idx = mixed.nonzero().squeeze(-1).to(wave.device)
            out[idx] = add_noise(out[idx], noise[idx], snr[idx])

        if cfg.telephone_prob > 0:  # no draws when off: older recipes keep their streams
            phone = torch.rand(batch, generator=gen) < cfg.telephone_prob
            if phone.any():
                idx = phone.nonzero().squeeze(-1).to(wave.device)
                out[idx] = telephone_band(out[idx], self.sample_rate)
        if cfg.gain_prob > 0:
            level = torch.rand(batch, generator=gen) < cfg.gain_prob
            gain_db = _uniform(batch, *cfg.gain_db, gen).to(device=wave.device, dtype=work.dtype)
            if level.any():
                idx = level.nonzero().squeeze(-1).to(wave.device)
                out[idx] = out[idx] * torch.pow(10.0, gain_db[idx] / 20.0).unsqueeze(-1)

        limit = work.abs().amax(dim=-1).clamp_min(1.0)
        peak = out.abs().amax(dim=-1).clamp_min(_EPS)
        out = out * torch.clamp(limit / peak, max=1.0).unsqueeze(-1)
        return out.to(wave.dtype)

    def _pool(
        self,
        wave: Tensor,
        babble_pool: Tensor | None,
        labels: Tensor | None,
        pool_labels: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        """Babble pool (M, N) and the (B, M) mask of which rows each item may use."""
        batch = wave.shape[0]
        if babble_pool is None:
            pool = wave
            allowed = ~torch.eye(batch, dtype=torch.bool)
            pool_labels = labels
        else:
            if babble_pool.ndim != 2 or babble_pool.shape[-1] != wave.shape[-1]:
                raise ValueError(
                    f"babble_pool must be (M, {wave.shape[-1]}), got {tuple(babble_pool.shape)}"
                )
            pool = babble_pool.to(wave.device)
            allowed = torch.ones(batch, pool.shape[0], dtype=torch.bool)
        if labels is not None and pool_labels is not None:
            allowed &= labels.cpu().view(-1, 1) != pool_labels.cpu().view(1, -1)
        return pool, allowed
