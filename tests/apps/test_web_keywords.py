"""Streaming keyword spotting in the browser: a stream of espeak-ng words, as a file and through Chromium's fake
microphone (``--use-file-for-fake-audio-capture``), recognized by the page's own streaming rule (apps/web/kws.js)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from .conftest import load_app, open_page

WORDS = ("yes", "stop", "left", "go")


@pytest.fixture(scope="module")
def stream(tmp_path_factory):
    """Four keywords in pink noise at 20 dB SNR, 2 s apart, in voices the model was trained on (new renderings)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng): it speaks the test stream")
    make = load_app("kws/make_stream.py")
    x, truth = make.make_stream(len(WORDS), seed=3, unknown_every=0, voices="train", keywords=WORDS)
    path = tmp_path_factory.mktemp("stream") / "four-words.wav"
    make.write_wav(path, x)
    return path, truth


def test_streamed_wav_windows_match_python_and_find_every_word(kws_artifact, stream, serve, launch) -> None:
    import edgeformer
    from edgeformer.data.audio import read_wav

    path, truth = stream
    page = open_page(launch(), serve([kws_artifact]) + "?backend=wasm")
    page.set_input_files("#wav", str(path))
    page.wait_for_function("window.edgeformer.results.length > 0")
    windows = page.evaluate("window.edgeformer.windows.map(w => [w.endSeconds, w.logits])")
    x, rate = read_wav(path)
    p = edgeformer.load(kws_artifact, threads=1)
    hop = round(0.25 * rate)
    assert [round(end * rate) for end, _ in windows] == list(range(rate, len(x) + 1, hop))
    for end, logits in windows[::4]:
        e = round(end * rate)
        want = p.session.run({p.input.name: x[None, e - rate : e]})[p.output.name][0]
        np.testing.assert_allclose(np.asarray(logits), want, atol=1e-4, rtol=0)
    detections = page.evaluate("window.edgeformer.detections")
    kws = load_app("kws/kws.py")
    events, _ = kws.spot(p, [x])
    assert [(d["label"], d["timeSeconds"]) for d in detections] == [(e.label, e.time_s) for e in events]
    assert [d["label"] for d in detections] == list(WORDS)
    for d, w in zip(detections, truth, strict=True):
        assert w.start_s <= d["timeSeconds"] <= w.end_s + 1.0  # the window that fired holds the word


def test_fake_microphone_stream_is_recognized(kws_artifact, stream, serve, launch, screenshots) -> None:
    path, truth = stream
    browser = launch(f"--use-file-for-fake-audio-capture={path}")
    page = open_page(browser, serve([kws_artifact]) + "?backend=wasm")
    page.click("#mic")
    duration = truth[-1].end_s + 1.0
    # stream time, not wall time: the page counts the samples it received (Chromium loops the file)
    page.wait_for_function(
        f"window.edgeformer.windows.some(w => w.endSeconds >= {duration})", timeout=max(60_000, 4000 * duration)
    )
    page.screenshot(path=str(screenshots / "keywords-microphone.png"), full_page=True)
    page.click("#mic")  # stop
    detections = [d for d in page.evaluate("window.edgeformer.detections") if d["timeSeconds"] <= duration]
    heard = [d["label"] for d in detections]
    assert all(d["source"] == "microphone" for d in detections)
    # the fake device resamples the file to its own rate and the page's AudioContext back to 16 kHz: not the
    # file's samples, so the words are asked for, not the exact windows
    assert heard == list(WORDS), f"heard {detections}"
