"""load().predict: the artifact's recorded preprocessing, softmax, labels, and clear errors for bad inputs."""

from __future__ import annotations

import wave

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from edgeformer.data.audio import fix_length, log_mel, read_wav
from edgeformer.data.images import load_image
from edgeformer.errors import ConfigError, InvalidInputError, ModelFileError
from edgeformer.inputs import AudioInput, ImageInput
from edgeformer.runtimes import Session, load
from edgeformer.runtimes.predictor import Prediction, Predictor

from .tiny_models import COLOR_LABELS, color_model, color_reference, make_model, two_input_model, write_artifact

RED = (250, 10, 10)


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _image(path, color=RED, size=(40, 48), mode="RGB"):
    Image.new(mode, size, color).save(path)
    return path


def test_predict_image_path_returns_softmax_top_k_with_labels(color_artifact, tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "noisy.png"
    Image.fromarray(rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)).save(path)
    preds = load(color_artifact).predict(path, top_k=5)
    expected = _softmax(color_reference(load_image(path, color_artifact.manifest.preprocessing)))[0]
    assert [p.index for p in preds] == list(np.argsort(-expected))
    assert [p.label for p in preds] == [COLOR_LABELS[p.index] for p in preds]
    np.testing.assert_allclose([p.score for p in preds], np.sort(expected)[::-1], rtol=1e-5)
    assert sum(p.score for p in preds) == pytest.approx(1.0)


def test_top_k_is_ordered_and_clamped(color_artifact, tmp_path):
    p = load(color_artifact)
    top2 = p.predict(_image(tmp_path / "red.png"), top_k=2)
    assert [x.label for x in top2] == ["red", "dark"]  # red beats dark: mean R high, G and B low
    assert top2[0].score > top2[1].score
    assert len(p.predict(tmp_path / "red.png", top_k=50)) == 5
    with pytest.raises(ConfigError, match="top_k must be a positive int"):
        p.predict(tmp_path / "red.png", top_k=0)


def test_path_pil_and_uint8_array_agree(color_artifact, tmp_path):
    path = _image(tmp_path / "red.png")
    p = load(color_artifact)
    by_path = p.predict(path)
    assert p.predict(str(path)) == by_path
    assert p.predict(Image.open(path)) == by_path
    assert p.predict(np.asarray(Image.open(path))) == by_path


def test_cmyk_jpeg_predicts_like_its_rgb(color_artifact, tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (40, 48), (0, 255, 255, 0)).save(path, quality=95)
    assert load(color_artifact).predict(path, top_k=1)[0].label == "red"


def test_sixteen_bit_png_predicts_like_the_8_bit_image(color_artifact, tmp_path):
    deep, flat = tmp_path / "deep.png", tmp_path / "flat.png"
    Image.fromarray(np.full((36, 36), 257 * 90, np.uint16)).save(deep)
    Image.fromarray(np.full((36, 36), 90, np.uint8)).save(flat)
    p = load(color_artifact)
    assert p.predict(deep) == p.predict(flat)
    assert p.predict(deep, top_k=1)[0].label == "dark"


def test_grayscale_png_predicts(color_artifact, tmp_path):
    gray = _image(tmp_path / "gray.png", color=30, mode="L")
    rgb = _image(tmp_path / "rgb.png", color=(30, 30, 30))
    p = load(color_artifact)
    assert p.predict(gray) == p.predict(rgb)


def test_truncated_jpeg_is_a_clear_error(color_artifact, tmp_path):
    good = tmp_path / "good.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(good)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(good.read_bytes()[:400])
    with pytest.raises(InvalidInputError, match=r"cut\.jpg: cannot read the image"):
        load(color_artifact).predict(cut)


def test_preprocessed_arrays_pass_unchanged(color_artifact, tmp_path):
    x = load_image(_image(tmp_path / "red.png"), color_artifact.manifest.preprocessing)
    p = load(color_artifact)
    assert p.predict(x) == p.predict(x[0]) == p.predict(tmp_path / "red.png")
    with pytest.raises(InvalidInputError, match=r"predict takes one input, got a batch of 2"):
        p.predict(np.concatenate([x, x]))
    with pytest.raises(InvalidInputError, match="channels-last"):
        p.predict(np.zeros((32, 32, 3), np.float32))  # HWC float: a layout error, not a silent transpose


def test_predict_batch_matches_single_predictions(color_artifact, tmp_path):
    paths = [_image(tmp_path / f"{i}.png", color=c) for i, c in enumerate([RED, (10, 250, 10), (10, 10, 250)])]
    p = load(color_artifact)
    batch = p.predict_batch(paths, top_k=1)
    assert [r[0].label for r in batch] == ["red", "green", "blue"]
    assert batch == [p.predict(x, top_k=1) for x in paths]


def test_static_batch_model_runs_one_item_at_a_time(tmp_path):
    art = write_artifact(
        tmp_path / "static",
        color_model(batch=1),
        preprocessing=ImageInput(resolution=32),
        labels=COLOR_LABELS,
    )
    paths = [_image(tmp_path / f"{i}.png", color=c) for i, c in enumerate([RED, (10, 10, 250)])]
    assert [r[0].label for r in load(art).predict_batch(paths, top_k=1)] == ["red", "blue"]


def test_float16_input_model_gets_its_preprocessing_in_float16(tmp_path):
    art = write_artifact(
        tmp_path / "fp16",
        color_model(fp16=True),
        preprocessing=ImageInput(resolution=32),
        labels=COLOR_LABELS,
    )
    p = load(art)
    assert p.input.dtype == "float16"
    assert p.predict(_image(tmp_path / "red.png"), top_k=1)[0].label == "red"
    with pytest.raises(InvalidInputError, match="dtype float32, expected float16"):  # the caller's array: no cast
        p.predict(np.zeros((1, 3, 32, 32), np.float32))


def test_without_labels_classes_are_numbered(tmp_path):
    art = write_artifact(tmp_path / "nolabels", color_model(), preprocessing=ImageInput(resolution=32))
    top = load(art).predict(_image(tmp_path / "red.png"), top_k=1)[0]
    assert top == Prediction("class_0", 0, top.score)
    assert top.to_dict() == {"label": "class_0", "index": 0, "score": top.score}


def test_label_count_must_match_the_output(tmp_path):
    art = write_artifact(tmp_path / "bad", color_model(), preprocessing=ImageInput(resolution=32), labels=("a", "b"))
    with pytest.raises(ModelFileError, match="2 labels but the model outputs 5 classes"):
        load(art)


def test_unknown_preprocessing_takes_arrays_only(tmp_path):
    art = write_artifact(tmp_path / "bare", color_model())  # what a bare ONNX from elsewhere loads as
    p = load(art)
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    assert p.predict(x, top_k=1)[0].index == int(np.argmax(color_reference(x)))
    with pytest.raises(ConfigError, match=r"records no preprocessing .* pass a preprocessed numpy array"):
        p.predict(_image(tmp_path / "red.png"))


def test_bare_onnx_file_loads_without_preprocessing(tmp_path):
    pytest.importorskip("edgeformer.modelfile", reason="bare files load through edgeformer.modelfile")
    path = tmp_path / "plain.onnx"
    onnx.save(color_model(), path)
    with pytest.raises(ConfigError, match="records no preprocessing"):
        load(path).predict(_image(tmp_path / "red.png"))


def test_multi_input_models_are_refused_by_predict(tmp_path):
    with pytest.raises(ConfigError, match="single-input models; this one takes image, scale"):
        load(write_artifact(tmp_path / "two", two_input_model()))


# --- audio ------------------------------------------------------------------------------------------
AUDIO = dict(sample_rate=8000, clip_seconds=0.5, n_fft=256, win_length=200, hop_length=80, n_mels=32, f_max=4000.0)
W_AUDIO = np.array([[1.0, -1.0, 0.0], [4.0, 0.0, -2.0]], np.float32)


def _write_wav(path, samples, rate):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def _graph_frontend_model(n: int) -> onnx.ModelProto:
    """waveform (N, n) -> [mean, mean square] @ W -> logits (N, 3)."""
    return make_model(
        [
            helper.make_node("ReduceMean", ["wave", "axes"], ["m"], keepdims=1),
            helper.make_node("Mul", ["wave", "wave"], ["sq"]),
            helper.make_node("ReduceMean", ["sq", "axes"], ["ms"], keepdims=1),
            helper.make_node("Concat", ["m", "ms"], ["f"], axis=1),
            helper.make_node("MatMul", ["f", "W"], ["logits"]),
        ],
        [helper.make_tensor_value_info("wave", TensorProto.FLOAT, ["batch", n])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(np.array([1], np.int64), "axes"), numpy_helper.from_array(W_AUDIO, "W")],
    )


def _host_frontend_model(n_mels: int, frames: int) -> onnx.ModelProto:
    """log-mel (N, 1, n_mels, frames) -> mean -> * [1, -1, 0.5] -> logits (N, 3)."""
    return make_model(
        [
            helper.make_node("GlobalAveragePool", ["mel"], ["p"]),
            helper.make_node("Flatten", ["p"], ["f"], axis=1),
            helper.make_node("MatMul", ["f", "W"], ["logits"]),
        ],
        [helper.make_tensor_value_info("mel", TensorProto.FLOAT, ["batch", 1, n_mels, frames])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(np.array([[1.0, -1.0, 0.5]], np.float32), "W")],
    )


def _tone(n, rate, freq=440.0, amp=0.5):
    return (amp * np.sin(2 * np.pi * freq * np.arange(n) / rate)).astype(np.float32)


def test_audio_graph_frontend_feeds_the_padded_waveform(tmp_path):
    spec = AudioInput(**AUDIO, frontend="graph")
    art = write_artifact(
        tmp_path / "kws", _graph_frontend_model(spec.num_samples), preprocessing=spec, labels=("a", "b", "c")
    )
    wav = _write_wav(tmp_path / "short.wav", _tone(3000, 8000) + 0.1, 8000)  # shorter than the 4000-sample clip
    wave_, _ = read_wav(wav)
    x = fix_length(wave_, spec.num_samples)
    expected = _softmax(np.array([x.mean(), (x**2).mean()]) @ W_AUDIO)
    preds = load(art).predict(wav, top_k=3)
    np.testing.assert_allclose([p.score for p in sorted(preds, key=lambda p: p.index)], expected, rtol=1e-5)
    long = _tone(6000, 8000)  # a waveform array is cropped to the clip
    assert load(art).predict(long) == load(art).predict(long[: spec.num_samples])


def test_audio_host_frontend_computes_log_mel_with_numpy(tmp_path):
    spec = AudioInput(**AUDIO, frontend="host")
    art = write_artifact(tmp_path / "host", _host_frontend_model(spec.n_mels, spec.num_frames), preprocessing=spec)
    tone = _tone(spec.num_samples, 8000, freq=1000.0)
    mean = log_mel(tone, spec).mean()
    expected = _softmax(np.array([mean, -mean, 0.5 * mean]))
    preds = load(art).predict(tone, top_k=3)
    np.testing.assert_allclose([p.score for p in sorted(preds, key=lambda p: p.index)], expected, rtol=1e-4)


def test_audio_wrong_sample_rate_is_refused_not_resampled(tmp_path):
    spec = AudioInput(**AUDIO)
    art = write_artifact(tmp_path / "kws", _graph_frontend_model(spec.num_samples), preprocessing=spec)
    wav = _write_wav(tmp_path / "cd.wav", _tone(8000, 16000), 16000)
    with pytest.raises(InvalidInputError, match=r"cd\.wav: sample rate is 16000 Hz but the model expects 8000 Hz"):
        load(art).predict(wav)
    with pytest.raises(InvalidInputError, match="mono float waveform"):
        load(art).predict(np.zeros((2, 10), np.int16))


def test_predictor_wraps_an_open_session(color_artifact, tmp_path):
    with Session(color_artifact, threads=1) as s:
        assert Predictor(s).predict(_image(tmp_path / "red.png"), top_k=1)[0].label == "red"


# the TorchScript exporter takes < 1 s here against ~20 s for dynamo; the exporter's own tests cover dynamo
@pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript:DeprecationWarning")
def test_torch_exported_model_predicts_like_torch(tmp_path):
    torch = pytest.importorskip("torch")

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
            self.head = torch.nn.Linear(8, 4)

        def forward(self, x):
            return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))

    module = Tiny().eval()
    onnx_path = tmp_path / "tiny.onnx"
    torch.onnx.export(
        module,
        (torch.zeros(1, 3, 32, 32),),
        str(onnx_path),
        input_names=["pixels"],
        output_names=["logits"],
        dynamic_axes={"pixels": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=18,
        dynamo=False,
    )
    spec = ImageInput(resolution=32, crop_pct=0.875)
    art = write_artifact(tmp_path / "art", onnx.load(onnx_path), preprocessing=spec)
    image = tmp_path / "noise.jpg"
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (50, 70, 3), dtype=np.uint8)).save(image)
    with torch.no_grad():
        expected = torch.softmax(module(torch.from_numpy(load_image(image, spec))), dim=-1)[0].numpy()
    preds = load(art).predict(image, top_k=4)
    assert [p.index for p in preds] == list(np.argsort(-expected))
    np.testing.assert_allclose([p.score for p in preds], np.sort(expected)[::-1], rtol=1e-4, atol=1e-6)
