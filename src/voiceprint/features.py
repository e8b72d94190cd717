"""Front-ends: log-Mel filterbank and MFCC as batched torch modules (CPU or GPU).

Both share one pipeline, per utterance of a (B, N) batch of waveforms:

1. pre-emphasis over the whole signal, y[n] = x[n] - a * x[n-1] (y[0] = x[0]);
2. framing without centre padding ("snip edges"): frame t covers samples
   [t * hop, t * hop + win), so T = 1 + (N - win) // hop frames for N >= win, else 0;
3. a periodic Hamming window of ``win`` samples, zero-padded to ``n_fft``, power spectrum
   |rfft|^2 (no scaling);
4. triangular Mel filters on the HTK Mel scale, mel(f) = 2595 * log10(1 + f / 700):
   ``n_mels + 2`` edges equally spaced in Mel between ``f_min`` and ``f_max``, each
   triangle linear in Hz with peak 1 (no area normalisation);
5. natural log with a floor, log(max(energy, log_floor));
6. MFCC only: orthonormal DCT-II over the Mel axis, keeping ``n_mfcc`` coefficients;
7. with ``mean_norm``, cepstral/spectral mean normalisation: the mean over each
   utterance's valid frames is subtracted.

With ``lengths`` (valid samples per row), frames that reach into padding are set to zero
and excluded from the mean, so a padded batch gives each item the same valid frames as
running it alone.
"""

from __future__ import annotations

import inspect
import math
from typing import TYPE_CHECKING, overload

import torch
from torch import Tensor, nn

from voiceprint.registry import lookup, register

if TYPE_CHECKING:
    from voiceprint.config import FeatureConfig


def hz_to_mel(hz: Tensor | float) -> Tensor:
    """HTK Mel scale: 2595 * log10(1 + f / 700)."""
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(hz, dtype=torch.float64) / 700.0)


def mel_to_hz(mel: Tensor | float) -> Tensor:
    """Inverse of :func:`hz_to_mel`."""
    return 700.0 * (10.0 ** (torch.as_tensor(mel, dtype=torch.float64) / 2595.0) - 1.0)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> Tensor:
    """Triangular filters, float64 (n_fft // 2 + 1, n_mels); peak 1, linear in Hz.

    Filter m rises from edge m to edge m + 1 and falls to edge m + 2, the ``n_mels + 2``
    edges being equally spaced on the HTK Mel scale. Raises ValueError when a filter
    covers no FFT bin (too many filters for this ``n_fft``).
    """
    bins = torch.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1, dtype=torch.float64)
    edges = mel_to_hz(torch.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins[:, None] - lower) / (centre - lower)
    falling = (upper - bins[:, None]) / (upper - centre)
    weights = torch.clamp(torch.minimum(rising, falling), min=0.0)
    empty = (weights.sum(dim=0) == 0).nonzero().flatten().tolist()
    if empty:
        raise ValueError(
            f"Mel filters {empty} cover no FFT bin: use fewer than {n_mels} mels or n_fft > {n_fft}"
        )
    return weights


def dct_matrix(n_in: int, n_out: int) -> Tensor:
    """Orthonormal DCT-II as a float64 (n_in, n_out) matrix: ``x @ D`` transforms rows."""
    n = torch.arange(n_in, dtype=torch.float64)
    k = torch.arange(n_out, dtype=torch.float64)
    basis = torch.cos(math.pi / n_in * (n[:, None] + 0.5) * k[None, :])
    basis *= math.sqrt(2.0 / n_in)
    basis[:, 0] /= math.sqrt(2.0)
    return basis


@register("frontend", "fbank")
class Fbank(nn.Module):
    """Log-Mel filterbank: waves (B, N) -> features (B, T, n_mels).

    ``win_ms``/``hop_ms`` are converted to samples by rounding; ``f_max=None`` means
    ``sample_rate / 2``; ``preemphasis=0`` disables pre-emphasis.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 512,
        win_ms: float = 25.0,
        hop_ms: float = 10.0,
        n_mels: int = 80,
        f_min: float = 20.0,
        f_max: float | None = 7600.0,
        mean_norm: bool = True,
        preemphasis: float = 0.97,
        log_floor: float = 1e-6,
    ) -> None:
        super().__init__()
        f_max = sample_rate / 2.0 if f_max is None else float(f_max)
        self.sample_rate = int(sample_rate)
        self.win_length = round(sample_rate * win_ms / 1000.0)
        self.hop_length = round(sample_rate * hop_ms / 1000.0)
        if not 0 < self.win_length <= n_fft:
            raise ValueError(f"window of {self.win_length} samples must be in 1..n_fft={n_fft}")
        if self.hop_length <= 0:
            raise ValueError(f"hop of {hop_ms} ms is shorter than one sample")
        if not 0.0 <= f_min < f_max <= sample_rate / 2.0:
            raise ValueError(
                f"need 0 <= f_min < f_max <= {sample_rate / 2:g} Hz, got {f_min}..{f_max}"
            )
        if log_floor <= 0.0:
            raise ValueError(f"log_floor must be positive, got {log_floor}")
        self.n_fft = int(n_fft)
        self.n_mels = int(n_mels)
        self.f_min = float(f_min)
        self.f_max = f_max
        self.mean_norm = bool(mean_norm)
        self.preemphasis = float(preemphasis)
        self.log_floor = float(log_floor)
        self.dim = self.n_mels
        window = torch.hamming_window(self.win_length, periodic=True, dtype=torch.float64)
        self.register_buffer("window", window.float(), persistent=False)
        self.register_buffer("preemph", torch.tensor(float(preemphasis)), persistent=False)
        self.register_buffer(
            "mel_fb",
            mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max).float(),
            persistent=False,
        )
        self.register_buffer("dft_basis", self._dft_basis(window), persistent=False)

    def _dft_basis(self, window: Tensor) -> Tensor:
        """Windowed real-DFT basis as conv1d weights, float32 (2 * (n_fft // 2 + 1), 1, win):
        cosines then negative sines, so a frame's dot products are rfft's real and
        imaginary parts (the zero padding to ``n_fft`` contributes nothing)."""
        n = torch.arange(self.win_length, dtype=torch.float64)
        k = torch.arange(self.n_fft // 2 + 1, dtype=torch.float64)
        angle = 2.0 * math.pi / self.n_fft * k[:, None] * n[None, :]
        basis = torch.cat([torch.cos(angle), -torch.sin(angle)]) * window[None, :]
        return basis[:, None, :].float()

    def extra_repr(self) -> str:
        return (
            f"sample_rate={self.sample_rate}, win={self.win_length}, hop={self.hop_length}, "
            f"n_fft={self.n_fft}, n_mels={self.n_mels}, f_min={self.f_min}, "
            f"f_max={self.f_max}, preemphasis={self.preemphasis}, mean_norm={self.mean_norm}, "
            f"dim={self.dim}"
        )

    @overload
    def num_frames(self, num_samples: int) -> int: ...

    @overload
    def num_frames(self, num_samples: Tensor) -> Tensor: ...

    def num_frames(self, num_samples: int | Tensor) -> int | Tensor:
        """Frames for ``num_samples`` samples: 1 + (N - win) // hop, or 0 when N < win."""
        if isinstance(num_samples, Tensor):
            shifted = num_samples - self.win_length
            frames = torch.div(shifted, self.hop_length, rounding_mode="floor")
            return torch.clamp(frames + 1, min=0)
        return max(0, 1 + (int(num_samples) - self.win_length) // self.hop_length)

    def log_mel(self, wave: Tensor, spectrum: str = "fft") -> Tensor:
        """Log-Mel energies (B, T, n_mels) of (B, N) waves, before any normalisation.

        ``spectrum="fft"`` frames the waves and takes ``rfft`` (the reference);
        ``"basis"`` computes the same power spectrum as one strided convolution with the
        windowed DFT basis (float32 rounding apart). The ONNX export uses the latter:
        onnxruntime runs a convolution several times faster than its DFT operator.
        """
        if self.preemphasis != 0.0:
            coeff = self.preemph.to(wave.dtype)
            wave = torch.cat([wave[:, :1], wave[:, 1:] - coeff * wave[:, :-1]], dim=1)
        if spectrum == "basis":
            bins = self.n_fft // 2 + 1
            parts = nn.functional.conv1d(
                wave[:, None, :], self.dft_basis.to(wave.dtype), stride=self.hop_length
            )  # (B, 2 * bins, T)
            real, imag = parts[:, :bins], parts[:, bins:]
            power = (real * real + imag * imag).transpose(1, 2)  # products: ONNX's Pow is slow
        elif spectrum == "fft":
            frames = wave.unfold(1, self.win_length, self.hop_length) * self.window.to(wave.dtype)
            spectrum_ = torch.fft.rfft(frames, n=self.n_fft)
            power = spectrum_.real.square() + spectrum_.imag.square()
        else:
            raise ValueError(f"spectrum must be 'fft' or 'basis', got {spectrum!r}")
        mel = torch.matmul(power, self.mel_fb.to(wave.dtype))
        return torch.log(torch.clamp(mel, min=self.log_floor))

    def transform(self, log_mel: Tensor) -> Tensor:
        """Map log-Mel energies (B, T, n_mels) to the output features (B, T, dim)."""
        return log_mel

    def forward(self, wave: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Features (B, T, dim) of waves (B, N); ``lengths`` (B,) counts valid samples."""
        if wave.dim() != 2:
            raise ValueError(f"expected waves of shape (B, N), got {tuple(wave.shape)}")
        if not wave.is_floating_point():
            raise ValueError(f"expected a float waveform, got {wave.dtype}")
        batch, num_samples = wave.shape
        if lengths is not None:
            lengths = torch.as_tensor(lengths, device=wave.device)
            if lengths.shape != (batch,):
                raise ValueError(f"lengths must have shape ({batch},), got {tuple(lengths.shape)}")
            if bool((lengths > num_samples).any()) or bool((lengths < 0).any()):
                raise ValueError(f"lengths must lie in 0..{num_samples}, got {lengths.tolist()}")
        total = self.num_frames(num_samples)
        if wave.dtype in (torch.float16, torch.bfloat16):
            wave = wave.float()
        if total == 0:
            return wave.new_zeros(batch, 0, self.dim)
        with torch.autocast(device_type=wave.device.type, enabled=False):
            feats = self.transform(self.log_mel(wave))
            if lengths is None:
                if self.mean_norm:
                    feats = feats - feats.mean(dim=1, keepdim=True)
                return feats
            return self.masked_features(feats, self.num_frames(lengths.long()))

    def masked_features(self, feats: Tensor, valid: Tensor) -> Tensor:
        """Zero the frames of ``feats`` (B, T, dim) past ``valid`` (B,) frames, and with
        ``mean_norm`` subtract the mean over the valid ones. Tensor operations only, so
        the ONNX export traces this same code with a symbolic time axis."""
        steps = torch.arange(feats.shape[1], device=feats.device)
        mask = (steps[None, :] < valid[:, None])[..., None]
        feats = feats.masked_fill(~mask, 0.0)  # also clears NaN/inf in padding
        if self.mean_norm:
            count = torch.clamp(valid, min=1).to(feats.dtype)[:, None, None]
            feats = (feats - feats.sum(dim=1, keepdim=True) / count).masked_fill(~mask, 0.0)
        return feats


@register("frontend", "mfcc")
class MFCC(Fbank):
    """MFCC: orthonormal DCT-II of the log-Mel energies, waves (B, N) -> (B, T, n_mfcc)."""

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 512,
        win_ms: float = 25.0,
        hop_ms: float = 10.0,
        n_mels: int = 40,
        n_mfcc: int = 30,
        f_min: float = 20.0,
        f_max: float | None = 7600.0,
        mean_norm: bool = True,
        preemphasis: float = 0.97,
        log_floor: float = 1e-6,
    ) -> None:
        super().__init__(
            sample_rate=sample_rate,
            n_fft=n_fft,
            win_ms=win_ms,
            hop_ms=hop_ms,
            n_mels=n_mels,
            f_min=f_min,
            f_max=f_max,
            mean_norm=mean_norm,
            preemphasis=preemphasis,
            log_floor=log_floor,
        )
        if not 0 < n_mfcc <= n_mels:
            raise ValueError(f"n_mfcc must be in 1..n_mels={n_mels}, got {n_mfcc}")
        self.n_mfcc = int(n_mfcc)
        self.dim = self.n_mfcc
        self.register_buffer("dct", dct_matrix(n_mels, n_mfcc).float(), persistent=False)

    def transform(self, log_mel: Tensor) -> Tensor:
        return torch.matmul(log_mel, self.dct.to(log_mel.dtype))


def build_frontend(cfg: FeatureConfig) -> nn.Module:
    """The front-end registered as ``cfg.kind``, given the config fields it takes."""
    ctor = lookup("frontend", cfg.kind)
    accepted = inspect.signature(ctor).parameters
    settings = {
        "sample_rate": cfg.sample_rate,
        "n_fft": cfg.n_fft,
        "win_ms": cfg.win_ms,
        "hop_ms": cfg.hop_ms,
        "n_mels": cfg.n_mels,
        "n_mfcc": cfg.n_mfcc,
        "f_min": cfg.f_min,
        "f_max": cfg.f_max,
        "mean_norm": cfg.mean_norm,
        "preemphasis": cfg.preemphasis,
    }
    return ctor(**{key: value for key, value in settings.items() if key in accepted})
