"""The committed reference models (edgeformer/zoo_weights) and the datasets they were trained on.

The checkpoints must load strictly and reproduce the held-out accuracy recorded in their sidecars, in torch
and, exported, in ONNX Runtime; the datasets must regenerate deterministically.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edgeformer.data import reference as refdata
from edgeformer.errors import ConfigError, ModelFileError, WeightsError
from edgeformer.models import reference as refmodels

REFERENCES = refmodels.list_references()
# the floors the training recipes were tuned to reach (the brief's targets); a retrain below them fails here
MIN_ACCURACY = {"digits": 0.95, "keywords": 0.85, "clutter": 0.80}
# slimming needs parents that are not saturated: the clutter models must also stay below this
MAX_ACCURACY = {"clutter": 0.97}


def _top1(model, x: np.ndarray, batch: int = 128) -> np.ndarray:
    import torch

    with torch.no_grad():
        return np.concatenate([model(torch.from_numpy(x[i : i + batch])).numpy() for i in range(0, len(x), batch)])


@pytest.fixture(scope="module")
def heldout():
    """Held-out data per reference, built once (the digits need scikit-learn)."""
    cache = {}

    def get(meta):
        if meta.name not in cache:
            if meta.dataset["name"] in ("digits", "clutter"):
                pytest.importorskip("sklearn", reason="the digits dataset ships with scikit-learn")
            cache[meta.name] = refmodels.reference_heldout(meta)
        return cache[meta.name]

    return get


def test_every_dataset_has_a_committed_reference():
    datasets = {refmodels.read_reference_meta(n).dataset["name"] for n in REFERENCES}
    assert datasets == {"digits", "keywords", "clutter"}
    assert len(REFERENCES) >= 5


@pytest.mark.parametrize("name", REFERENCES)
def test_reference_reaches_recorded_heldout_accuracy(name, heldout):
    model, meta = refmodels.load_reference(name)
    x, y = heldout(meta)
    assert len(y) == meta.heldout_samples
    accuracy = float((_top1(model, x).argmax(1) == y).mean())
    assert accuracy == pytest.approx(meta.heldout_accuracy, abs=0.005)
    assert meta.heldout_accuracy >= MIN_ACCURACY[meta.dataset["name"]]
    assert meta.heldout_accuracy <= MAX_ACCURACY.get(meta.dataset["name"], 1.0)
    assert len(meta.labels) == model.arch.num_classes


@pytest.mark.parametrize("name", REFERENCES)
def test_reference_fused_predicts_like_unfused(name, heldout):
    model, meta = refmodels.load_reference(name)
    x = heldout(meta)[0][:64]
    before = _top1(model, x)
    after = _top1(model.fuse(), x)
    np.testing.assert_allclose(after, before, atol=1e-3 * np.abs(before).max())


@pytest.mark.slow
@pytest.mark.parametrize("name", REFERENCES)
def test_reference_exported_to_onnx_gives_same_top1(name, heldout, tmp_path):
    import torch

    import edgeformer

    model, meta = refmodels.load_reference(name)
    x, y = heldout(meta)
    art = edgeformer.export(
        model, out=tmp_path / name, example_inputs=(torch.from_numpy(x[:2]),), input_spec=meta.input
    )
    with edgeformer.Session(art, threads=1) as s:
        onnx_logits = np.concatenate(
            [s.run({s.inputs[0].name: x[i : i + 64]})[s.outputs[0].name] for i in range(0, len(x), 64)]
        )
    torch_logits = _top1(model, x)
    top2 = np.sort(torch_logits, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-3  # near-ties may flip under a different summation order
    assert (onnx_logits.argmax(1) == torch_logits.argmax(1))[clear].all()
    assert float((onnx_logits.argmax(1) == y).mean()) == pytest.approx(meta.heldout_accuracy, abs=0.005)


@pytest.mark.slow
def test_digit_png_predicted_through_the_runtime_matches_torch(tmp_path):
    pytest.importorskip("sklearn", reason="the digits dataset ships with scikit-learn")
    import torch
    from PIL import Image

    import edgeformer
    from edgeformer.data.images import load_image

    model, meta = refmodels.load_reference("digits_shvit")
    images, _ = refdata.digits_images("heldout")
    x, _ = refdata.digits_split("heldout", resolution=meta.input.resolution)
    art = edgeformer.export(model, out=tmp_path / "m", example_inputs=(torch.from_numpy(x[:2]),), input_spec=meta.input)
    predictor = edgeformer.load(art, threads=1)
    for i in (0, 1, 2):
        png = tmp_path / f"digit{i}.png"
        Image.fromarray(images[i], "L").save(png)
        # the recorded preprocessing turns the 8-bit file into exactly the training input
        np.testing.assert_array_equal(load_image(png, art.manifest.preprocessing)[0], x[i])
        assert predictor.predict(png, top_k=1)[0].index == int(_top1(model, x[i : i + 1]).argmax())


def test_digits_split_is_deterministic_and_stratified():
    pytest.importorskip("sklearn", reason="the digits dataset ships with scikit-learn")
    x1, y1 = refdata.digits_split("heldout", resolution=32)
    x2, y2 = refdata.digits_split("heldout", resolution=32)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert x1.shape == (len(y1), 3, 32, 32) and x1.dtype == np.float32 and y1.dtype == np.int64
    assert x1.min() == -1.0 and x1.max() == 1.0
    _, y_train = refdata.digits_images("train")
    assert len(y1) + len(y_train) == 1797
    counts, train_counts = np.bincount(y1, minlength=10), np.bincount(y_train, minlength=10)
    np.testing.assert_allclose(counts / (counts + train_counts), 0.3, atol=0.01)


def test_digits_splits_are_disjoint():
    pytest.importorskip("sklearn", reason="the digits dataset ships with scikit-learn")
    from sklearn.datasets import load_digits

    train, _ = refdata.digits_images("train")
    held, _ = refdata.digits_images("heldout")
    # every source image lands in exactly one split (duplicated digits in the source are counted once each)
    all_images = np.rint(load_digits().images * (255 / 16)).astype(np.uint8)
    keys = lambda a: sorted(map(bytes, a))  # noqa: E731
    assert sorted(keys(train) + keys(held)) == keys(all_images)


def test_split_names_are_checked():
    with pytest.raises(ConfigError, match="split must be"):
        refdata.digits_images("test")
    with pytest.raises(ConfigError, match="split must be"):
        refdata.keyword_plan("validation")


def test_keywords_heldout_is_deterministic_and_balanced():
    x1, y1 = refdata.keywords_split("heldout")
    x2, y2 = refdata.keywords_split("heldout")
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert x1.shape == (len(y1), 16000) and x1.dtype == np.float32
    assert np.abs(x1).max() <= 1.0
    counts = np.bincount(y1, minlength=12)
    assert len(counts) == 12 and (counts == counts[0]).all()
    # _silence_ is room tone at -70..-20 dB RMS; speech clips peak at -24..-1 dBFS
    silence_rms = np.sqrt(np.mean(x1[y1 == refdata.SILENCE].astype(np.float64) ** 2, axis=1))
    speech_peak = np.abs(x1[y1 != refdata.SILENCE]).max(axis=1)
    assert silence_rms.max() <= 10 ** (-20 / 20) + 1e-6
    assert speech_peak.min() >= 10 ** (-24 / 20) - 1e-6 and speech_peak.max() <= 10 ** (-1 / 20) + 1e-6


def test_heldout_voices_speeds_and_pitches_are_unseen_in_training():
    train, _ = refdata.keyword_plan("train")
    held, _ = refdata.keyword_plan("heldout")
    train_voices = {u.voice for u in train}
    for u in held:
        accent, _, timbre = u.voice.partition("+")
        assert u.voice not in train_voices
        assert accent in refdata.HELDOUT_ACCENTS or timbre in refdata.HELDOUT_TIMBRES
    assert not {u.speed for u in held} & {u.speed for u in train}
    assert not {u.pitch for u in held} & {u.pitch for u in train}


def test_mulaw_codes_round_trip():
    codes = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(refdata.mulaw_encode(refdata.mulaw_decode(codes)), codes)
    x = np.linspace(-1, 1, 1001)
    # µ-law keeps the error relative: about 2.2 % of the amplitude (half a code step), never a fixed LSB
    assert (np.abs(refdata.mulaw_decode(refdata.mulaw_encode(x)) - x) <= 0.025 * np.abs(x) + 1e-4).all()


def test_committed_heldout_clips_are_the_espeak_rendering_of_the_plan():
    version = refdata.espeak_version()
    if version is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng); the committed clips are used as they are")
    meta = refmodels.read_reference_meta("keywords_audioformer")
    if version != meta.dataset["synthesizer"]:
        pytest.skip(f"espeak-ng here is {version!r}, the clips were made with {meta.dataset['synthesizer']!r}")
    clips, labels = refdata.keywords_clean("heldout", source="npz")
    plan, plan_labels = refdata.keyword_plan("heldout")
    np.testing.assert_array_equal(labels[: len(plan)], plan_labels)
    for i in range(0, len(plan), 37):  # a spread of words and voices keeps this fast
        np.testing.assert_array_equal(refdata.synthesize(plan[i]), clips[i], err_msg=str(plan[i]))


def test_load_reference_refuses_an_edited_weights_file(tmp_path):
    name = "digits_shvit"
    shutil.copy(refdata.ZOO_WEIGHTS_DIR / f"{name}.json", tmp_path)
    data = bytearray((refdata.ZOO_WEIGHTS_DIR / f"{name}.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / f"{name}.safetensors").write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="sha256"):
        refmodels.load_reference(name, root=tmp_path)


def test_load_reference_refuses_weights_of_another_architecture(tmp_path):
    name = "digits_shvit"
    shutil.copy(refdata.ZOO_WEIGHTS_DIR / f"{name}.safetensors", tmp_path)
    meta = json.loads((refdata.ZOO_WEIGHTS_DIR / f"{name}.json").read_text())
    meta["arch_overrides"]["num_classes"] = 12
    (tmp_path / f"{name}.json").write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match=r"mis-shaped: .*head\.l\.weight"):
        refmodels.load_reference(name, root=tmp_path)


def test_unknown_reference_suggests_close_names():
    with pytest.raises(ConfigError, match="digits_shvit"):
        refmodels.load_reference("digit_shvit")


def test_sidecar_with_unknown_fields_is_refused():
    d = refmodels.read_reference_meta("digits_shvit").to_dict()
    d["extra"] = 1
    with pytest.raises(ModelFileError, match="unknown"):
        refmodels.ReferenceMeta.from_dict(d)


def test_clutter_is_deterministic_per_split_and_fresh_per_training_epoch():
    pytest.importorskip("sklearn", reason="the digits dataset ships with scikit-learn")
    from edgeformer.data.clutter import clutter_split

    h1, yh = clutter_split("heldout")
    h2, _ = clutter_split("heldout")
    np.testing.assert_array_equal(h1, h2)
    e0, y0 = clutter_split("train", epoch=0)
    e1, y1 = clutter_split("train", epoch=1)
    np.testing.assert_array_equal(y0, y1)  # the same digits, the same split
    assert not np.array_equal(e0, e1)  # new clutter every epoch
    assert h1.shape[1:] == (3, 64, 64) and h1.min() >= -1 and h1.max() <= 1 and len(yh) + len(y0) == 1797
