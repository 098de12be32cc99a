"""apps/kws: torch-free streaming keyword spotting, scored on generated streams of espeak-ng words at known times."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from .conftest import load_app

SEEDS = (10, 11, 12, 13)  # streams never used to choose the defaults (those were tried on seeds 0-5)


@pytest.fixture(scope="module")
def make():
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng): it speaks the test streams")
    return load_app("kws/make_stream.py")


@pytest.fixture(scope="module")
def kws():
    return load_app("kws/kws.py")


def test_precision_and_recall_on_voices_the_model_never_heard(make, kws, kws_artifact) -> None:
    import edgeformer

    p = edgeformer.load(kws_artifact, threads=1)
    matched = detections = keywords = 0
    for seed in SEEDS:
        x, truth = make.make_stream(20, seed=seed, voices="heldout")
        chunks = [x[i : i + 1600] for i in range(0, len(x), 1600)]  # 100 ms at a time, as a microphone delivers
        events, spotter = kws.spot(p, chunks)
        s = make.score(events, truth)
        matched, detections, keywords = matched + s["matched"], detections + s["detections"], keywords + s["keywords"]
        assert spotter.windows == (len(x) - 16000) // 4000 + 1
        assert 0 < spotter.real_time_factor < 1
    precision, recall = matched / detections, matched / keywords
    print(f"KWS on {keywords} keywords in {len(SEEDS)} streams: precision {precision:.3f}, recall {recall:.3f}")
    assert precision >= 0.9 and recall >= 0.9, (precision, recall)


def test_the_stream_is_the_same_for_the_same_seed_and_scored_by_its_truth(make) -> None:
    a, truth = make.make_stream(3, seed=1, unknown_every=3)
    b, _ = make.make_stream(3, seed=1, unknown_every=3)
    np.testing.assert_array_equal(a, b)
    assert [w.label for w in truth][2] == "_unknown_"
    Event = load_app("kws/kws.py").Event
    hit = Event(truth[0].label, truth[0].end_s + 0.5, 0.9)
    wrong_label = Event("off" if truth[1].label != "off" else "on", truth[1].end_s, 0.9)
    on_distractor = Event("yes", truth[2].end_s, 0.9)
    s = make.score([hit, wrong_label, on_distractor], truth)
    assert (s["matched"], s["detections"], s["keywords"]) == (1, 3, 2)


def test_the_command_reads_a_wav_and_reports_events_and_real_time_factor(make, kws, kws_artifact, tmp_path, capsys):
    x, _ = make.make_stream(4, seed=3, unknown_every=0, voices="train", keywords=("yes", "stop", "left", "go"))
    wav = tmp_path / "stream.wav"
    make.write_wav(wav, x)
    assert kws.main([str(kws_artifact), "--wav", str(wav)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[2] for line in out[:-1]] == ["yes", "stop", "left", "go"]
    assert out[-1].startswith("4 keyword(s) in ") and "real-time factor 0.0" in out[-1]
    assert kws.main([str(kws_artifact), "--wav", str(wav), "--json", "--threshold", "0.99"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["events"] == [] and summary["windows"] == (len(x) - 16000) // 4000 + 1


def test_what_cannot_be_spotted_exits_with_its_code(kws, kws_artifact, digits_artifact, tmp_path, capsys) -> None:
    assert kws.main([str(digits_artifact), "--wav", str(tmp_path / "x.wav")]) == 2  # an image model
    assert "needs an audio classifier" in capsys.readouterr().err
    assert kws.main([str(kws_artifact), "--wav", str(tmp_path / "missing.wav")]) == 3
    assert kws.main([str(kws_artifact), "--wav", str(tmp_path / "x.wav"), "--hop", "0"]) == 2


def test_the_microphone_without_an_input_device_is_exit_5(kws, kws_artifact, capsys) -> None:
    try:
        import sounddevice as sd

        inputs = [d for d in sd.query_devices() if d["max_input_channels"] > 0]
    except (ImportError, OSError):
        inputs = []  # no PortAudio: the app must say so the same way
    if inputs:
        pytest.skip(f"this machine has a microphone ({inputs[0]['name']}); the no-device path cannot be shown")
    assert kws.main([str(kws_artifact), "--mic", "--seconds", "0.5"]) == 5
    err = capsys.readouterr().err
    assert err.startswith("error (BackendUnavailableError): ")
    assert "--wav FILE" in err or "libportaudio2" in err
