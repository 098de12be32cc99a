from __future__ import annotations

import logging

import numpy as np
import onnx
import pytest

from edgeformer.artifact import TensorSpec
from edgeformer.errors import CalibrationError, DynamicShapeError
from edgeformer.inputs import ImageInput
from edgeformer.quant import compute_ranges, open_calibration, preprocess
from edgeformer.quant.config import QuantConfig
from edgeformer.quant.ranges import NUM_BINS, RangeCollector

from .conftest import AUDIO, RES, attention_model, save_image, save_wav

INPUTS = [TensorSpec(name="input", shape=(1, 3, RES, RES), dtype="float32")]
PRE = ImageInput(resolution=RES)


def drain(reader):
    out = []
    while (feeds := reader.get_next()) is not None:
        out.append(feeds)
    return out


def test_empty_folder_is_a_calibration_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CalibrationError, match="no image files"):
        open_calibration(tmp_path / "empty", inputs=INPUTS, preprocessing=PRE, config=QuantConfig())


def test_folder_without_images_counts_what_it_ignored(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("x")
    with pytest.raises(CalibrationError, match="1 other file"):
        open_calibration(tmp_path / "d", inputs=INPUTS, preprocessing=PRE, config=QuantConfig())


def _folder_with_truncated(tmp_path, n_good=6):
    rng = np.random.default_rng(0)
    folder = tmp_path / "imgs"
    for i in range(n_good):
        save_image(folder / f"ok_{i}.jpg", "RGB", rng)
    good = (folder / "ok_0.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (folder / "garbage.png").write_bytes(b"not an image at all")
    return folder


def test_unreadable_image_fails_by_default_naming_the_file(tmp_path):
    folder = _folder_with_truncated(tmp_path)
    data = open_calibration(folder, inputs=INPUTS, preprocessing=PRE, config=QuantConfig(fidelity_samples=0))
    with pytest.raises(CalibrationError, match=r"(truncated|garbage)\.(jpg|png).*--on-bad-sample skip"):
        drain(data.reader)


def test_unreadable_images_are_skipped_and_counted_with_skip(tmp_path):
    folder = _folder_with_truncated(tmp_path)
    cfg = QuantConfig(on_bad_sample="skip", fidelity_samples=0)
    data = open_calibration(folder, inputs=INPUTS, preprocessing=PRE, config=cfg)
    feeds = drain(data.reader)
    assert len(feeds) == 6 and data.summary.skipped == 2 and data.summary.used == 6
    assert {s.split(":")[0] for s in data.summary.skipped_samples} == {"truncated.jpg", "garbage.png"}
    data.reader.rewind()  # a second pass neither re-reads nor re-counts bad files
    assert len(drain(data.reader)) == 6 and data.summary.skipped == 2


def test_all_samples_unreadable_is_a_calibration_error_even_with_skip(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.png").write_bytes(b"\x89PNG broken")
    data = open_calibration(
        folder, inputs=INPUTS, preprocessing=PRE, config=QuantConfig(on_bad_sample="skip", fidelity_samples=0)
    )
    with pytest.raises(CalibrationError, match="no readable calibration samples"):
        drain(data.reader)


@pytest.mark.parametrize("mode", ["CMYK", "I;16", "L", "RGBA", "P"])
def test_cmyk_16bit_grayscale_palette_images_are_converted_explicitly(tmp_path, mode):
    rng = np.random.default_rng(0)
    path = save_image(tmp_path / "imgs" / f"x.{'jpg' if mode == 'CMYK' else 'png'}", mode, rng)
    data = open_calibration(path.parent, inputs=INPUTS, preprocessing=PRE, config=QuantConfig(fidelity_samples=0))
    (feeds,) = drain(data.reader)
    x = feeds["input"]
    assert x.shape == (1, 3, RES, RES) and x.dtype == np.float32 and np.isfinite(x).all()
    assert x.std() > 0.1  # content survived the conversion (a clipped 16-bit image would be flat white)


def test_nan_input_is_refused_naming_the_sample(tmp_path):
    arr = np.random.default_rng(0).standard_normal((5, 3, RES, RES)).astype(np.float32)
    arr[3, 0, 2, 2] = np.nan
    np.save(tmp_path / "x.npy", arr)
    data = open_calibration(
        tmp_path / "x.npy",
        inputs=INPUTS,
        preprocessing=None,
        config=QuantConfig(on_bad_sample="skip", fidelity_samples=0),
    )
    with pytest.raises(CalibrationError, match=r"x\.npy\[3\].*NaN"):
        drain(data.reader)


def test_nan_in_held_out_samples_is_refused_too(tmp_path):
    arr = np.full((8, 3, RES, RES), np.nan, np.float32)
    np.save(tmp_path / "x.npy", arr)
    with pytest.raises(CalibrationError, match=r"x\.npy\[\d\].*NaN"):  # read at open: the fidelity samples
        open_calibration(tmp_path / "x.npy", inputs=INPUTS, preprocessing=None, config=QuantConfig(fidelity_samples=2))


def test_inf_input_is_refused_too(tmp_path):
    arr = np.zeros((2, 3, RES, RES), np.float32)
    arr[1, 1, 1, 1] = np.inf
    np.savez(tmp_path / "x.npz", input=arr)
    data = open_calibration(
        tmp_path / "x.npz", inputs=INPUTS, preprocessing=None, config=QuantConfig(fidelity_samples=0)
    )
    with pytest.raises(CalibrationError, match=r"x\.npz\[1\]"):
        drain(data.reader)


def test_npz_must_be_keyed_by_input_name(tmp_path):
    np.savez(tmp_path / "x.npz", pixels=np.zeros((2, 3, RES, RES), np.float32))
    with pytest.raises(CalibrationError, match=r"no array for input.*input.*holds pixels"):
        open_calibration(tmp_path / "x.npz", inputs=INPUTS, preprocessing=None, config=QuantConfig())


def test_array_with_wrong_sample_shape_is_refused(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((4, 3, RES + 1, RES), np.float32))
    with pytest.raises(CalibrationError, match=r"shape \(3, 17, 16\).*expects \(3, 16, 16\)"):
        open_calibration(tmp_path / "x.npy", inputs=INPUTS, preprocessing=None, config=QuantConfig())


def test_image_folder_whose_preprocessing_does_not_fit_the_model_is_not_skipped(image_folder):
    other = ImageInput(resolution=RES * 2)
    data = open_calibration(
        image_folder, inputs=INPUTS, preprocessing=other, config=QuantConfig(on_bad_sample="skip", fidelity_samples=0)
    )
    with pytest.raises(CalibrationError, match="expects"):
        data.reader.get_next()


def test_sampling_is_seeded_and_holds_out_fidelity_samples(image_folder):
    cfg = QuantConfig(calib_size=10, fidelity_samples=4)
    a = open_calibration(image_folder, inputs=INPUTS, preprocessing=PRE, config=cfg)
    b = open_calibration(image_folder, inputs=INPUTS, preprocessing=PRE, config=cfg)
    c = open_calibration(image_folder, inputs=INPUTS, preprocessing=PRE, config=cfg.replace(seed=1))
    assert a.reader.indices == b.reader.indices != c.reader.indices
    assert len(a.reader.indices) == 10 and len(a.holdout) == 4 and a.summary.holdout == 4
    assert not set(a.reader.indices) & set(range(24)).difference(range(24))
    held = {a.reader.source.names.index(n) for n in a.reader.source.names} - set(a.reader.indices)
    assert len(held) == 24 - 10


def test_synthetic_data_warns_loudly_and_is_deterministic(caplog):
    cfg = QuantConfig(calib_size=3, fidelity_samples=2)
    with caplog.at_level(logging.WARNING):
        a = open_calibration("synthetic", inputs=INPUTS, preprocessing=PRE, config=cfg)
    assert any("SYNTHETIC" in r.message for r in caplog.records if r.levelno == logging.WARNING)
    b = open_calibration("synthetic", inputs=INPUTS, preprocessing=PRE, config=cfg)
    for x, y in zip(drain(a.reader), drain(b.reader), strict=True):
        np.testing.assert_array_equal(x["input"], y["input"])
    assert a.summary.warnings


def test_synthetic_data_for_dynamic_spatial_dims_is_a_dynamic_shape_error():
    dyn = [TensorSpec(name="input", shape=("batch", 3, "height", "width"), dtype="float32")]
    with pytest.raises(DynamicShapeError, match=r"height.*width.*--resolution"):
        open_calibration("synthetic", inputs=dyn, preprocessing=None, config=QuantConfig())


def test_wav_folder_feeds_the_waveform_and_refuses_a_wrong_rate(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "wavs"
    for i in range(4):
        save_wav(folder / f"{i}.wav", AUDIO.sample_rate, 0.3, rng)  # longer than the clip: cropped
    save_wav(folder / "wrong_rate.wav", 16000, 0.25, rng)
    inputs = [TensorSpec(name="wave", shape=("batch", AUDIO.num_samples), dtype="float32")]
    pre = AUDIO.to_dict()
    data = open_calibration(folder, inputs=inputs, preprocessing=pre, config=QuantConfig(fidelity_samples=0))
    with pytest.raises(CalibrationError, match=r"wrong_rate.wav.*16000 Hz.*8000 Hz"):
        drain(data.reader)
    skip = open_calibration(
        folder, inputs=inputs, preprocessing=pre, config=QuantConfig(fidelity_samples=0, on_bad_sample="skip")
    )
    feeds = drain(skip.reader)
    assert len(feeds) == 4 and skip.summary.skipped == 1
    assert feeds[0]["wave"].shape == (1, AUDIO.num_samples) and np.abs(feeds[0]["wave"]).max() <= 1.0


def test_host_frontend_audio_is_fed_as_log_mel(tmp_path):
    save_wav(tmp_path / "w" / "a.wav", AUDIO.sample_rate, 0.25, np.random.default_rng(0))
    pre = {**AUDIO.to_dict(), "frontend": "host"}
    shape = (1, 1, AUDIO.n_mels, AUDIO.num_frames)
    data = open_calibration(
        tmp_path / "w",
        inputs=[TensorSpec(name="mel", shape=shape, dtype="float32")],
        preprocessing=pre,
        config=QuantConfig(fidelity_samples=0),
    )
    assert drain(data.reader)[0]["mel"].shape == shape


# --- streaming range collection ----------------------------------------------------------------
def test_streamed_histogram_equals_the_histogram_of_all_data():
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal(1000) * s for s in (0.1, 1.0, 7.0, 0.5)]  # range grows twice
    c = RangeCollector(method="percentile", percentile=99.0)
    for b in batches:
        c.update({"t": b})
    h = c._hist["t"]
    everything = np.concatenate(batches)
    idx = np.clip(((everything + h.t) * NUM_BINS / (2 * h.t)).astype(int), 0, NUM_BINS - 1)
    np.testing.assert_array_equal(h.counts, np.bincount(idx, minlength=NUM_BINS))
    lo, hi = c.result().ranges["t"]
    # quantile conventions differ by one order statistic; the edges are within a bin of the sample
    bw = 2 * h.t / NUM_BINS
    q = np.sort(everything)
    k = int(0.005 * q.size)
    assert q[k - 2] - bw <= lo <= q[k + 1] + bw
    assert q[-k - 2] - bw <= hi <= q[-k + 1] + bw


def test_entropy_clips_outliers_but_minmax_keeps_them():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(100_000), [60.0]])
    ent, mm = RangeCollector(method="entropy"), RangeCollector(method="minmax")
    ent.update({"t": x})
    mm.update({"t": x})
    assert mm.result().ranges["t"][1] == 60.0
    assert 2.0 < ent.result().ranges["t"][1] < 30.0


def test_constant_activation_gets_a_minimum_range_and_a_warning(caplog):
    c = RangeCollector()
    c.update({"const": np.full(10, 0.5, np.float32), "zero": np.zeros(4, np.float32)})
    with caplog.at_level(logging.WARNING):
        r = c.result(min_range=1e-3)
    for name in ("const", "zero"):
        lo, hi = r.ranges[name]
        assert hi - lo == pytest.approx(1e-3) and np.isfinite([lo, hi]).all()
    assert set(r.widened) == {"const", "zero"} and "constant" in caplog.text


def test_nan_activation_is_a_calibration_error_naming_tensor_and_sample(tmp_path):
    pre = preprocess(_save(attention_model(sqrt_of_input=True), tmp_path), tmp_path / "pre.onnx", QuantConfig())
    arr = np.abs(np.random.default_rng(0).standard_normal((3, 3, RES, RES))).astype(np.float32)
    arr[2] *= -1  # Sqrt of negative inputs: NaN inside the graph, not in the input
    np.save(tmp_path / "x.npy", arr)
    data = open_calibration(
        tmp_path / "x.npy", inputs=INPUTS, preprocessing=None, config=QuantConfig(fidelity_samples=0)
    )
    with pytest.raises(CalibrationError, match=r"activation 'sqrt_in'.*x\.npy\[2\]"):
        compute_ranges(pre, data.reader, QuantConfig())


def test_too_few_samples_for_entropy_fails_or_falls_back_as_configured(tmp_path, calib_npz):
    pre = preprocess(_save(attention_model(), tmp_path), tmp_path / "pre.onnx", QuantConfig())
    cfg = QuantConfig(method="entropy", calib_size=5, fidelity_samples=0)
    data = open_calibration(calib_npz, inputs=INPUTS, preprocessing=None, config=cfg)
    with pytest.raises(CalibrationError, match=r"at least 32 samples.*only 5.*--method minmax"):
        compute_ranges(pre, data.reader, cfg)
    cfg = cfg.replace(too_few_samples="minmax")
    data = open_calibration(calib_npz, inputs=INPUTS, preprocessing=None, config=cfg)
    ranges = compute_ranges(pre, data.reader, cfg, data.summary)
    assert ranges.method == "minmax" and data.summary.method == "minmax"
    assert data.summary.method_requested == "entropy" and "falls back" in data.summary.warnings[-1]


def test_ranges_cover_every_float_activation_once(tmp_path, calib_npz):
    pre = preprocess(_save(attention_model(), tmp_path), tmp_path / "pre.onnx", QuantConfig())
    cfg = QuantConfig(calib_size=8, fidelity_samples=0)
    ranges = compute_ranges(pre, open_calibration(calib_npz, inputs=INPUTS, preprocessing=None, config=cfg).reader, cfg)
    model = onnx.load(str(pre))
    assert "input" in ranges and "logits" in ranges and ranges.num_samples == 8
    assert all(n.output[0] in ranges for n in model.graph.node if n.op_type in ("Conv", "Softmax", "MatMul"))
    assert all(lo < hi for lo, hi in ranges.ranges.values())


def _save(model, tmp_path):
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    return path
