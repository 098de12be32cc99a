"""The log-mel front-end: numpy reference vs the conv1d STFT in torch and in ONNX, and wav reading.

Tolerance: max |error| <= 1e-4 x max |log-mel| (the scale of what the model sees; the log floor
``log(1e-6) = -13.8`` keeps that scale >= 13.8). Float32 is the binding case: the conv STFT's absolute
error is ~1e-7 x |frame|, which ``log(P + 1e-6)`` amplifies where a band's power is near 1e-6; measured
worst cases here are ~5e-5 at -6 dBFS peak (full-scale tones reach ~9e-5; ``torch.stft`` in float32 is up to
2x worse). Signals therefore peak at or below 0.5. A float64 front-end must agree to 1e-9.
"""

from __future__ import annotations

import struct
import wave

import numpy as np
import pytest
import torch

from edgeformer.data.audio import (
    AudioFileError,
    check_sample_rate,
    fix_length,
    hann_window,
    hz_to_mel,
    log_mel,
    mel_filterbank,
    read_wav,
)
from edgeformer.errors import ConfigError, InvalidInputError
from edgeformer.inputs import AudioInput
from edgeformer.models.audio import LogMelFrontend

SPEC = AudioInput()
SR = SPEC.sample_rate
TOL = {torch.float32: 1e-4, torch.float64: 1e-9}


def _speech_like(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """Voiced harmonics (120 Hz with 5 Hz vibrato, three formants), syllable envelope, fricative bursts."""
    f0 = 120.0 * (1.0 + 0.03 * np.sin(2 * np.pi * 5.0 * t))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    voiced = np.zeros_like(t)
    for k in range(1, 60):
        f = 120.0 * k
        if f > 7500:
            break
        formants = sum(np.exp(-(((f - c) / 150.0) ** 2)) for c in (500.0, 1500.0, 2500.0))
        voiced += (0.2 + formants) / k * np.sin(k * phase)
    envelope = np.sin(np.pi * 3.0 * t) ** 2  # three syllables per second
    bursts = np.diff(rng.standard_normal(len(t) + 1)) * (((t > 0.30) & (t < 0.38)) | ((t > 0.70) & (t < 0.80)))
    x = voiced / np.abs(voiced).max() * envelope + 0.15 * bursts
    return 0.4 * x / np.abs(x).max()


def _signals() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(SPEC.num_samples) / SR
    return {
        "noise": 0.1 * rng.standard_normal(len(t)),
        "sine": 0.5 * np.sin(2 * np.pi * 1000.0 * t + 0.3),
        "chirp": 0.5 * np.sin(2 * np.pi * (50.0 * t + (7900.0 - 50.0) / 2 * t**2)),
        "speech": _speech_like(rng, t),
    }


SIGNALS = _signals()
BATCH = np.stack(list(SIGNALS.values()))


def _rel_err(out: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(out.astype(np.float64) - ref).max() / np.abs(ref).max())


# --- torch vs numpy ------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", list(SIGNALS))
def test_torch_frontend_matches_numpy_reference(name, dtype):
    x = SIGNALS[name]
    ref = log_mel(x, SPEC)
    with torch.no_grad():
        out = LogMelFrontend(SPEC, dtype=dtype)(torch.tensor(x[None], dtype=dtype))
    assert tuple(out.shape) == (1, 1, SPEC.n_mels, SPEC.num_frames)
    assert out.dtype == dtype
    assert _rel_err(out[0, 0].numpy(), ref) <= TOL[dtype]


def test_reference_is_batched_and_keeps_float32():
    ref = log_mel(BATCH.astype(np.float32), SPEC)
    assert ref.shape == (len(BATCH), SPEC.n_mels, SPEC.num_frames) and ref.dtype == np.float32
    np.testing.assert_allclose(ref[2], log_mel(BATCH[2], SPEC), atol=1e-5 * 14)


def test_frontend_uses_torch_stft_window_and_htk_mels():
    n_fft, win = SPEC.n_fft, SPEC.win_length
    left = (n_fft - win) // 2
    expected = torch.zeros(n_fft, dtype=torch.float64)
    expected[left : left + win] = torch.hann_window(win, periodic=True, dtype=torch.float64)
    np.testing.assert_allclose(hann_window(win, n_fft), expected.numpy(), atol=1e-15)
    assert hz_to_mel(1000.0) == pytest.approx(1000.0, abs=0.05)  # HTK: 1 kHz is ~1000 mel
    fb = mel_filterbank(SPEC)
    assert fb.shape == (SPEC.n_mels, n_fft // 2 + 1)
    assert fb.min() >= 0 and fb.max() <= 1 and (fb.sum(axis=1) > 0).all()  # no empty band at 64 mels
    assert (np.diff(fb.argmax(axis=1)) >= 0).all()  # band centres rise with the band index


def test_log_mel_rejects_short_and_non_finite_input():
    with pytest.raises(InvalidInputError, match="fix_length"):
        log_mel(np.zeros(SPEC.n_fft // 2), SPEC)
    bad = SIGNALS["noise"].copy()
    bad[5] = np.nan
    with pytest.raises(InvalidInputError, match="NaN"):
        log_mel(bad, SPEC)
    with pytest.raises(ConfigError, match="f_max"):
        mel_filterbank(AudioInput(f_max=9000.0))


def test_fix_length_pads_and_crops_at_the_end():
    x = np.arange(5, dtype=np.float32)
    np.testing.assert_array_equal(fix_length(x, 3), [0, 1, 2])
    np.testing.assert_array_equal(fix_length(x, 7), [0, 1, 2, 3, 4, 0, 0])
    assert fix_length(np.ones((2, 5)), 8).shape == (2, 8)


# --- ONNX ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
def test_frontend_onnx_matches_torch_and_reference(dynamo, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    frontend = LogMelFrontend(SPEC).eval()
    x = torch.tensor(BATCH, dtype=torch.float32)
    path = tmp_path / "frontend.onnx"
    kwargs = (
        {"dynamic_shapes": ({0: torch.export.Dim("batch")},)}
        if dynamo
        else {"dynamic_axes": {"wave": {0: "batch"}, "log_mel": {0: "batch"}}}
    )
    torch.onnx.export(
        frontend,
        (x,),
        str(path),
        dynamo=dynamo,
        opset_version=18,
        input_names=["wave"],
        output_names=["log_mel"],
        **kwargs,
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ref = log_mel(BATCH, SPEC)
    with torch.no_grad():
        expected = frontend(x).numpy()
    for rows in (slice(None), slice(3, 4)):  # the batch axis is dynamic
        out = session.run(None, {"wave": BATCH[rows].astype(np.float32)})[0]
        assert _rel_err(out, expected[rows]) <= 1e-4
        assert _rel_err(out[:, 0], ref[rows]) <= 1e-4


# --- wav -----------------------------------------------------------------------------------------------
def _write_pcm(path, data: bytes, channels: int, width: int, rate: int = SR) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(data)


def _write_riff(path, fmt_chunk: bytes, data: bytes) -> None:
    body = b"WAVEfmt " + struct.pack("<I", len(fmt_chunk)) + fmt_chunk + b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def test_16khz_16bit_wav_round_trips(tmp_path):
    pcm = (SIGNALS["speech"] * 32767).astype("<i2")
    _write_pcm(tmp_path / "a.wav", pcm.tobytes(), 1, 2)
    x, rate = read_wav(tmp_path / "a.wav")
    assert rate == SR and x.dtype == np.float32 and x.shape == pcm.shape
    np.testing.assert_array_equal(x, pcm / 32768.0)
    check_sample_rate(rate, SPEC)  # accepted


@pytest.mark.parametrize(
    ("width", "dtype", "scale", "offset"),
    [(1, np.uint8, 128.0, 128.0), (2, "<i2", 32768.0, 0.0), (4, "<i4", 2.0**31, 0.0)],
    ids=["8bit", "16bit", "32bit"],
)
def test_pcm_widths_and_stereo_mix_to_mono(tmp_path, width, dtype, scale, offset):
    rng = np.random.default_rng(1)
    ints = rng.integers(np.iinfo(dtype).min, np.iinfo(dtype).max, size=(100, 2), endpoint=True).astype(dtype)
    _write_pcm(tmp_path / "s.wav", ints.tobytes(), 2, width)
    x, _ = read_wav(tmp_path / "s.wav")
    np.testing.assert_allclose(x, ((ints.astype(np.float64) - offset) / scale).mean(axis=1), rtol=1e-6, atol=1e-7)


def test_24bit_pcm_sign_extends(tmp_path):
    values = np.array([0, 1, -1, 2**23 - 1, -(2**23), 12345, -54321])
    raw = b"".join(int(v).to_bytes(3, "little", signed=True) for v in values)
    _write_pcm(tmp_path / "a.wav", raw, 1, 3)
    x, _ = read_wav(tmp_path / "a.wav")
    np.testing.assert_allclose(x, values / 2.0**23, rtol=1e-6)


def test_float32_and_extensible_wavs_are_read(tmp_path):
    samples = np.array([0.0, 0.5, -0.25, 1.0, -1.0], dtype="<f4")
    fmt = struct.pack("<HHIIHH", 3, 1, SR, SR * 4, 4, 32)
    _write_riff(tmp_path / "f.wav", fmt, samples.tobytes())
    x, rate = read_wav(tmp_path / "f.wav")
    assert rate == SR
    np.testing.assert_array_equal(x, samples)
    # WAVE_FORMAT_EXTENSIBLE with the PCM sub-format GUID (what many DAWs write for > 2 channels or 24 bits)
    guid = struct.pack("<H", 1) + bytes.fromhex("000000001000800000aa00389b71")
    ext = struct.pack("<HHIIHHHHI", 0xFFFE, 1, SR, SR * 2, 2, 16, 22, 16, 4) + guid
    pcm = np.array([0, 16384, -32768], dtype="<i2")
    _write_riff(tmp_path / "e.wav", ext, pcm.tobytes())
    np.testing.assert_array_equal(read_wav(tmp_path / "e.wav")[0], pcm / 32768.0)


def test_44khz_wav_is_refused_with_the_fix(tmp_path):
    _write_pcm(tmp_path / "cd.wav", np.zeros(441, dtype="<i2").tobytes(), 1, 2, rate=44100)
    _, rate = read_wav(tmp_path / "cd.wav")
    with pytest.raises(InvalidInputError) as e:
        check_sample_rate(rate, SPEC, source="cd.wav")
    message = str(e.value)
    assert "44100" in message and "16000" in message and "sox in.wav -r 16000 out.wav" in message


@pytest.mark.parametrize("keep", [20, 44, 44 + 1000], ids=["header", "no-data", "data"])
def test_truncated_wav_raises_clearly(tmp_path, keep):
    _write_pcm(tmp_path / "full.wav", np.zeros(16000, dtype="<i2").tobytes(), 1, 2)
    cut = tmp_path / "cut.wav"
    cut.write_bytes((tmp_path / "full.wav").read_bytes()[:keep])
    with pytest.raises(AudioFileError, match="truncated") as e:
        read_wav(cut)
    assert isinstance(e.value, InvalidInputError) and "cut.wav" in str(e.value)


def test_truncated_float_wav_and_non_wav_raise(tmp_path):
    fmt = struct.pack("<HHIIHH", 3, 1, SR, SR * 4, 4, 32)
    _write_riff(tmp_path / "f.wav", fmt, np.zeros(1000, dtype="<f4").tobytes())
    (tmp_path / "cut.wav").write_bytes((tmp_path / "f.wav").read_bytes()[:2000])
    with pytest.raises(AudioFileError, match="truncated"):
        read_wav(tmp_path / "cut.wav")
    (tmp_path / "img.wav").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(AudioFileError, match="not a WAV file"):
        read_wav(tmp_path / "img.wav")
    with pytest.raises(AudioFileError, match="not found"):
        read_wav(tmp_path / "missing.wav")
    _write_pcm(tmp_path / "empty.wav", b"", 1, 2)
    with pytest.raises(AudioFileError, match="no samples"):
        read_wav(tmp_path / "empty.wav")


@pytest.mark.slow
def test_frontend_converts_to_openvino_and_coreml(tmp_path):
    ov = pytest.importorskip("openvino")
    frontend = LogMelFrontend(SPEC).eval()
    x = torch.tensor(BATCH, dtype=torch.float32)
    with torch.no_grad():
        expected = frontend(x).numpy()
    # f32 explicitly: on a CPU with bf16 units (AMX, AVX512-BF16) OpenVINO's default would run bf16
    compiled = ov.Core().compile_model(
        ov.convert_model(frontend, example_input=(x,)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
    )
    assert _rel_err(compiled(BATCH.astype(np.float32))[0], expected) <= 1e-4
    ct = pytest.importorskip("coremltools")  # conversion only: prediction needs macOS
    traced = torch.jit.trace(frontend, (x,))
    ct.convert(traced, inputs=[ct.TensorType(name="wave", shape=tuple(x.shape))], convert_to="mlprogram")
