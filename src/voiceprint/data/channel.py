"""Channel effects on whole waveforms: speed perturbation (a polyphase windowed-sinc
resampler) and the narrow-band telephone channel (8 kHz, G.711 mu-law coding).

Shapes: waveforms are ``(B, N)`` (speed perturbation also ``(N,)``) float tensors in
samples; rates in Hz.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import numpy as np
import torch
from torch import Tensor, nn


@functools.lru_cache(maxsize=16)
def _resample_kernels(up: int, down: int, zeros: int, rolloff: float, beta: float) -> Tensor:
    """Polyphase windowed-sinc filters for output rate = input rate * up / down.

    Output sample ``up*m + r`` sits at input time ``m*down + r*down/up``; its filter row r
    holds taps at input offsets a = -pad .. down+pad from ``m*down``. Returns (up, 1, K),
    float64, cached (a shard worker resamples every crop with the same two factors), so
    callers must not modify it.
    """
    cutoff = rolloff * min(1.0, up / down)  # fraction of the input Nyquist frequency
    half = zeros / cutoff  # half-width in input samples
    pad = math.ceil(half)
    offsets = torch.arange(-pad, down + pad + 1, dtype=torch.float64)
    phases = torch.arange(up, dtype=torch.float64) * down / up
    t = offsets.unsqueeze(0) - phases.unsqueeze(-1)  # (up, K) distance to the output time
    ratio = (t / half).clamp(-1.0, 1.0)
    window = torch.special.i0(beta * torch.sqrt(1.0 - ratio**2)) / torch.special.i0(
        torch.tensor(beta, dtype=torch.float64)
    )
    taps = cutoff * torch.sinc(cutoff * t) * window * (t.abs() < half)
    return taps.unsqueeze(1)


def _resample(wave: Tensor, up: int, down: int) -> Tensor:
    """Rational resampling of (B, N) by up/down; output length ceil(N * up / down)."""
    batch, length = wave.shape
    kernels = _resample_kernels(up, down, zeros=24, rolloff=0.95, beta=8.6).to(wave)
    pad = (kernels.shape[-1] - down - 1) // 2
    n_out = math.ceil(length * up / down)
    columns = math.ceil(n_out / up)
    right = max(0, (columns - 1) * down + kernels.shape[-1] - length - pad)
    padded = nn.functional.pad(wave.unsqueeze(1), (pad, right))
    phases = nn.functional.conv1d(padded, kernels, stride=down)[..., :columns]  # (B, up, M)
    return phases.transpose(1, 2).reshape(batch, -1)[:, :n_out]


def speed_perturb(wave: Tensor | np.ndarray, factor: float) -> Tensor | np.ndarray:
    """Change speed by ``factor`` (tempo and pitch together, like ``sox speed``).

    wave: (N,) or (B, N), a torch tensor or numpy array (returned as the same kind and
    dtype). The signal is played ``factor`` times faster: a 1 kHz tone becomes
    ``factor`` kHz at the same sample rate and the output has ceil(N / factor) samples
    (about N / factor). Implemented as a polyphase windowed-sinc (Kaiser) resampler with
    the factor approximated by a fraction with denominator at most 100; low-passed below
    the new Nyquist frequency when ``factor > 1``. Meant for whole utterances, offline,
    to create new speakers (0.9 and 1.1).
    """
    if factor <= 0:
        raise ValueError(f"speed factor must be positive, got {factor}")
    is_numpy = isinstance(wave, np.ndarray)
    tensor = torch.from_numpy(np.ascontiguousarray(wave)) if is_numpy else wave
    dtype = tensor.dtype
    work = tensor if dtype == torch.float64 else tensor.float()
    single = work.ndim == 1
    if single:
        work = work.unsqueeze(0)
    ratio = Fraction(factor).limit_denominator(100)
    if ratio == 1:
        out = work.clone()
    else:
        out = _resample(work, up=ratio.denominator, down=ratio.numerator)
    out = out.squeeze(0) if single else out
    out = out.to(dtype)
    return out.numpy() if is_numpy else out


TELEPHONE_RATE = 8000  # Hz: narrow-band telephony (G.711)
MU_LAW = 255.0  # G.711 mu-law's compression constant


def mu_law_code(wave: Tensor, bits: int = 8) -> Tensor:
    """G.711-style mu-law companding and quantisation to ``bits`` bits, then expansion.

    wave: (..., N) in [-1, 1] (clipped there). Compressing with mu = 255, rounding to
    2**bits levels and expanding gives the coding noise of a narrow-band phone line:
    small relative error on loud samples, a floor on quiet ones. Same shape and dtype.
    """
    x = wave.clamp(-1.0, 1.0)
    compressed = torch.sign(x) * torch.log1p(MU_LAW * x.abs()) / math.log1p(MU_LAW)
    steps = 2 ** (bits - 1)
    quantised = torch.round(compressed * steps) / steps
    return torch.sign(quantised) * torch.expm1(quantised.abs() * math.log1p(MU_LAW)) / MU_LAW


def telephone_band(wave: Tensor, sample_rate: int = 16000, codec: bool = True) -> Tensor:
    """A telephone channel: down to 8 kHz, mu-law coded (``codec``), back to ``sample_rate``.

    wave: (B, N) at ``sample_rate`` Hz. The round trip through 8 kHz removes every
    component above about 3.8 kHz (the resampler's cut-off, 0.95 of 4 kHz); the codec adds
    G.711's quantisation noise. Returns (B, N), wave's dtype. Rates at or below 8 kHz pass
    through the codec only.
    """
    work = wave if wave.dtype == torch.float64 else wave.float()
    length = work.shape[-1]
    if sample_rate <= TELEPHONE_RATE:
        narrow = work
    else:
        ratio = Fraction(TELEPHONE_RATE, sample_rate)
        narrow = _resample(work, up=ratio.numerator, down=ratio.denominator)
    if codec:
        narrow = mu_law_code(narrow)
    if sample_rate > TELEPHONE_RATE:
        narrow = _resample(narrow, up=ratio.denominator, down=ratio.numerator)
    out = narrow[..., :length]
    if out.shape[-1] < length:
        out = nn.functional.pad(out, (0, length - out.shape[-1]))
    return out.to(wave.dtype)
