"""voiceprint.features: shapes, padding invariance, known values and a librosa reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from voiceprint.config import FeatureConfig
from voiceprint.features import (
    MFCC,
    Fbank,
    build_frontend,
    dct_matrix,
    hz_to_mel,
    mel_filterbank,
    mel_to_hz,
)
from voiceprint.registry import build

SR = 16000


def tone(freq: float, seconds: float = 0.5) -> torch.Tensor:
    t = torch.arange(int(seconds * SR), dtype=torch.float64) / SR
    return (0.5 * torch.sin(2 * math.pi * freq * t)).float()


@pytest.mark.parametrize(("samples", "frames"), [(0, 0), (399, 0), (400, 1), (559, 1),
                                                 (560, 2), (16000, 98), (48123, 299)])  # fmt: skip
def test_num_frames_and_shapes(samples: int, frames: int) -> None:
    fbank, mfcc = Fbank(), MFCC()
    assert fbank.num_frames(samples) == frames
    assert int(fbank.num_frames(torch.tensor(samples))) == frames
    assert (fbank.dim, mfcc.dim) == (80, 30)
    wave = torch.randn(2, samples) * 0.1
    assert fbank(wave).shape == (2, frames, 80)
    assert mfcc(wave).shape == (2, frames, 30)


def test_window_and_hop_follow_the_settings() -> None:
    frontend = Fbank(sample_rate=8000, n_fft=256, win_ms=32.0, hop_ms=16.0, n_mels=24, f_max=None)
    assert (frontend.win_length, frontend.hop_length) == (256, 128)
    assert frontend(torch.randn(1, 8000)).shape == (1, 1 + (8000 - 256) // 128, 24)


@pytest.mark.parametrize("kind", [Fbank, MFCC])
@pytest.mark.parametrize("mean_norm", [True, False])
def test_padding_does_not_change_valid_frames(kind: type[Fbank], mean_norm: bool) -> None:
    torch.manual_seed(0)
    frontend = kind(mean_norm=mean_norm)
    lengths = [16000, 9000, 4321, 300]  # the last is shorter than one window
    batch = torch.randn(len(lengths), max(lengths))  # junk beyond each length
    batch[1, 9500] = float("nan")  # even NaN in the padding stays out
    out = frontend(batch, torch.tensor(lengths))
    for row, length in enumerate(lengths):
        valid = frontend.num_frames(length)
        alone = frontend(batch[row : row + 1, :length])[0]
        torch.testing.assert_close(out[row, :valid], alone, atol=2e-5, rtol=1e-5)
        assert torch.all(out[row, valid:] == 0)
    batch[1, 9500] = 0.0
    full = torch.full((len(lengths),), batch.shape[1])
    torch.testing.assert_close(frontend(batch, full), frontend(batch))


def test_mean_norm_zeroes_the_mean_over_valid_frames() -> None:
    frontend = MFCC(mean_norm=True)
    out = frontend(torch.randn(2, 8000), torch.tensor([8000, 5000]))
    valid = frontend.num_frames(5000)
    assert out[0].mean(0).abs().max() < 1e-4
    assert out[1, :valid].mean(0).abs().max() < 1e-4


@pytest.mark.parametrize("freq", [1000.0, 1500.0, 3000.0, 6000.0])
def test_tone_peaks_in_the_nearest_mel_filter(freq: float) -> None:
    """Filter centres: n_mels + 2 equally spaced HTK-Mel points, minus the two ends. (Below
    ~500 Hz neighbouring centres are closer than the Hamming window's main lobe, so the
    test uses higher tones.)"""
    frontend = Fbank(n_mels=40, mean_norm=False, preemphasis=0.0)
    low, high = (2595.0 * np.log10(1.0 + f / 700.0) for f in (20.0, 7600.0))
    centres = 700.0 * (10.0 ** (np.linspace(low, high, 42)[1:-1] / 2595.0) - 1.0)
    expected = int(np.argmin(np.abs(centres - freq)))
    feats = frontend(tone(freq)[None])[0]
    assert torch.all(feats.argmax(dim=1) == expected)


def test_log_energy_known_value() -> None:
    """A unit impulse in every frame has a flat power spectrum w[k]^2 at the impulse's sample,
    so each Mel energy is w^2 times the filter's weight sum."""
    frontend = Fbank(n_mels=20, mean_norm=False, preemphasis=0.0)
    wave = torch.zeros(1, 400)
    wave[0, 200] = 1.0
    expected = torch.log(frontend.window[200] ** 2 * frontend.mel_fb.sum(dim=0))
    torch.testing.assert_close(frontend(wave)[0, 0], expected, rtol=1e-5, atol=1e-5)


def test_preemphasis_is_a_first_difference() -> None:
    wave = torch.randn(1, 4000, dtype=torch.float64)
    emphasised = torch.cat([wave[:, :1], wave[:, 1:] - 0.97 * wave[:, :-1]], dim=1)
    with_pre = Fbank(preemphasis=0.97, mean_norm=False).double()
    without = Fbank(preemphasis=0.0, mean_norm=False).double()
    # The coefficient is stored as a float32 buffer, hence the tolerance.
    torch.testing.assert_close(with_pre(wave), without(emphasised), atol=1e-5, rtol=1e-5)


def test_mel_scale_and_dct() -> None:
    assert float(hz_to_mel(700.0)) == pytest.approx(2595.0 * math.log10(2.0))
    assert float(hz_to_mel(1000.0)) == pytest.approx(1000.0, abs=0.1)  # HTK: 1 kHz ~ 1000 mel
    hz = torch.tensor([0.0, 440.0, 7999.0], dtype=torch.float64)
    torch.testing.assert_close(mel_to_hz(hz_to_mel(hz)), hz)
    fb = mel_filterbank(SR, 512, 40, 20.0, 7600.0)
    assert fb.shape == (257, 40) and float(fb.max()) <= 1.0 and torch.all(fb.sum(0) > 0)
    square = dct_matrix(16, 16)
    torch.testing.assert_close(square.T @ square, torch.eye(16, dtype=torch.float64))
    scipy_fft = pytest.importorskip("scipy.fft")
    x = np.random.default_rng(0).standard_normal((3, 40))
    np.testing.assert_allclose(
        x @ dct_matrix(40, 13).numpy(), scipy_fft.dct(x, type=2, norm="ortho")[:, :13], atol=1e-12
    )


@pytest.mark.parametrize("n_fft", [512, 400])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_mfcc_matches_librosa(n_fft: int, dtype: torch.dtype) -> None:
    """MFCC equals librosa.feature.mfcc within 1e-4 (absolute, natural-log units; values reach
    about 20) in float64 and float32; measured differences are about 1e-5.

    Same settings on both sides: periodic Hamming window of 400 samples, hop 160, ``n_fft``,
    40 HTK-scale Mel filters without area normalisation (``htk=True, norm=None``) over
    20-7600 Hz, no centring, no pre-emphasis, no mean normalisation, 30 coefficients.
    librosa's log is 10 * log10 (power_to_db, here with the same floor and no top_db
    clipping), so its coefficients are scaled by ln(10) / 10 to natural-log units. With
    n_fft > win librosa centres the window inside an n_fft frame, so its frame t starts
    (n_fft - win) / 2 samples later than ours: our input is shifted by that much.
    """
    librosa = pytest.importorskip("librosa")
    y = np.random.default_rng(1).standard_normal(8000) * 0.1
    y += np.sin(2 * np.pi * 220.0 * np.arange(8000) / SR)
    mel = librosa.feature.melspectrogram(
        y=y, sr=SR, n_fft=n_fft, hop_length=160, win_length=400, window="hamming",
        center=False, power=2.0, n_mels=40, fmin=20.0, fmax=7600.0, htk=True, norm=None,
        dtype=np.float64,
    )  # fmt: skip
    reference = librosa.feature.mfcc(
        S=librosa.power_to_db(mel, amin=1e-6, top_db=None), n_mfcc=30, dct_type=2, norm="ortho"
    ).T * (math.log(10.0) / 10.0)
    frontend = MFCC(n_fft=n_fft, n_mels=40, n_mfcc=30, mean_norm=False, preemphasis=0.0)
    shift = (n_fft - 400) // 2
    ours = frontend.to(dtype)(torch.tensor(y[shift:], dtype=dtype)[None])[0].double().numpy()
    frames = min(len(ours), len(reference))
    assert frames >= len(reference) - 1
    np.testing.assert_allclose(ours[:frames], reference[:frames], atol=1e-4, rtol=0)


def test_build_frontend_uses_the_config() -> None:
    fbank = build_frontend(FeatureConfig(kind="fbank", n_mels=64, win_ms=20.0))
    assert isinstance(fbank, Fbank) and not isinstance(fbank, MFCC)
    assert (fbank.dim, fbank.win_length) == (64, 320)
    mfcc = build_frontend(FeatureConfig(kind="MFCC", n_mels=32, n_mfcc=20, mean_norm=False))
    assert isinstance(mfcc, MFCC) and (mfcc.dim, mfcc.n_mels, mfcc.mean_norm) == (20, 32, False)
    default = build_frontend(FeatureConfig())
    assert default(torch.randn(1, 16000)).shape == (1, 98, FeatureConfig().n_mfcc)
    assert isinstance(build("frontend", "fbank"), Fbank)
    with pytest.raises(KeyError, match="fbank"):
        build_frontend(FeatureConfig(kind="spectrogram"))


def test_invalid_settings_and_inputs() -> None:
    with pytest.raises(ValueError, match="n_mfcc"):
        MFCC(n_mels=20, n_mfcc=30)
    with pytest.raises(ValueError, match="window"):
        Fbank(n_fft=256)  # 25 ms = 400 samples > 256
    with pytest.raises(ValueError, match="cover no FFT bin"):
        Fbank(n_fft=512, n_mels=200)
    with pytest.raises(ValueError, match="f_max"):
        Fbank(f_max=9000.0)
    with pytest.raises(ValueError, match=r"\(B, N\)"):
        Fbank()(torch.randn(16000))
    with pytest.raises(ValueError, match="lengths"):
        Fbank()(torch.randn(2, 1000), torch.tensor([1000, 1001]))


def test_half_precision_input_and_device() -> None:
    frontend = MFCC()
    wave = torch.randn(2, 4000) * 0.1
    reference = frontend(wave)
    torch.testing.assert_close(frontend(wave.half()), reference, atol=0.05, rtol=0.01)
    if torch.cuda.is_available():
        on_gpu = frontend.cuda()(wave.cuda(), torch.tensor([4000, 3000]).cuda()).cpu()
        torch.testing.assert_close(on_gpu[0], reference[0], atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("kind", [Fbank, MFCC])
@pytest.mark.parametrize("n_fft", [400, 512])
def test_dft_basis_spectrum_equals_the_fft(kind: type[Fbank], n_fft: int) -> None:
    """The convolution the ONNX export runs gives the FFT's log-Mel energies."""
    torch.manual_seed(1)
    fe = kind(n_fft=n_fft)
    wave = 0.1 * torch.randn(2, 16000)
    wave[1] *= 1e-3  # quiet speech: the log amplifies small differences most
    reference = fe.log_mel(wave)
    basis = fe.log_mel(wave, spectrum="basis")
    assert basis.shape == reference.shape == (2, fe.num_frames(16000), fe.n_mels)
    torch.testing.assert_close(basis, reference, atol=2e-3, rtol=0)
    # a pure tone's energy lands in the same Mel filter both ways
    tone = torch.sin(2 * math.pi * 1000.0 * torch.arange(8000) / 16000)[None]
    assert fe.log_mel(tone, spectrum="basis").mean(1).argmax() == fe.log_mel(tone).mean(1).argmax()
    with pytest.raises(ValueError, match="spectrum"):
        fe.log_mel(wave, spectrum="dft")
