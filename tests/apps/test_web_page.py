"""The browser demo in a real Chromium on the real onnxruntime-web: its outputs equal Python onnxruntime's.

fp32 on the WebAssembly backend: logits within 1e-4 of ``edgeformer.load(...)`` on the same file, and the
page's input tensor bit-equal to edgeformer's Pillow pipeline (the page resamples like Pillow).
"""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import feed_files, open_page

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _python(artifact, path):
    """Python onnxruntime on ``path`` through the artifact's own preprocessing: (input tensor, logits)."""
    import edgeformer

    p = edgeformer.load(artifact, threads=1)
    x = p.preprocess(path)
    return x, p.session.run({p.input.name: x})[p.output.name][0]


def _drop(page, selector: str, path, mime: str) -> None:
    """Drop ``path`` on ``selector`` as a user dragging a file from the desktop does (a DataTransfer with a File)."""
    data = list(path.read_bytes())
    dt = page.evaluate_handle(
        """([bytes, name, mime]) => {
            const dt = new DataTransfer();
            dt.items.add(new File([new Uint8Array(bytes)], name, { type: mime }));
            return dt;
        }""",
        [data, path.name, mime],
    )
    page.dispatch_event(selector, "dragover", {"dataTransfer": dt})
    page.dispatch_event(selector, "drop", {"dataTransfer": dt})


def test_dropped_and_picked_digits_match_python_onnxruntime(
    digits_artifact, samples, serve, launch, screenshots
) -> None:
    url = serve([digits_artifact])
    page = open_page(launch(), url + "?backend=wasm&threads=2")
    info = page.evaluate("window.edgeformer.info")
    assert info["backend"] == "wasm" and info["isolated"] is True and info["threads"] == 2
    files = sorted((samples / "digits").glob("*.png"))[:4]
    for i, f in enumerate(files):
        if i % 2:
            page.set_input_files("#file", str(f))
        else:
            _drop(page, "#dropzone", f, "image/png")
        page.wait_for_function(f"window.edgeformer.results.length > {i}")
    results = page.evaluate("window.edgeformer.results")
    page.screenshot(path=str(screenshots / "digits.png"), full_page=True)
    assert [r["source"] for r in results] == [f.name for f in files]
    for f, r in zip(files, results, strict=True):
        x, logits = _python(digits_artifact, f)
        np.testing.assert_array_equal(np.asarray(r["input"], np.float32), x.reshape(-1))
        np.testing.assert_allclose(np.asarray(r["logits"]), logits, atol=1e-4, rtol=0)
        assert r["top"][0]["label"] == f.name.split("-")[0]  # the true label leads the file name
    assert "digits" in page.inner_text("#info-model")
    assert page.inner_text("#info-latency").endswith(f"over {len(files)} runs (last {results[-1]['ms']:.2f} ms)")


def test_keyword_wav_matches_python_onnxruntime(kws_artifact, samples, serve, launch, screenshots) -> None:
    url = serve([kws_artifact])
    page = open_page(launch(), url + "?backend=wasm")
    files = sorted((samples / "keywords").glob("*.wav"))[:3]
    results = feed_files(page, "#wav", files)
    for f, r in zip(files, results, strict=True):
        x, logits = _python(kws_artifact, f)
        np.testing.assert_array_equal(
            np.asarray(r["input"], np.float32), x.reshape(-1)
        )  # the page reads wavs as Python
        np.testing.assert_allclose(np.asarray(r["logits"]), logits, atol=1e-4, rtol=0)
    page.screenshot(path=str(screenshots / "keywords-wav.png"), full_page=True)


@pytest.mark.parametrize("isolation", [True, False], ids=["isolated", "not-isolated"])
def test_threads_follow_the_isolation_headers_and_both_classify(
    isolation, digits_artifact, samples, serve, launch
) -> None:
    url = serve([digits_artifact], isolation=isolation)
    page = open_page(launch(), url + "?backend=wasm&threads=2")
    info = page.evaluate("window.edgeformer.info")
    assert info["isolated"] is isolation
    assert info["threads"] == (2 if isolation else 1)
    warning = page.locator("#isolation")
    if isolation:
        assert warning.is_hidden()
    else:
        assert "runs 1 thread" in warning.inner_text()
    f = samples / "digits" / "3-0.png"
    page.set_input_files("#file", str(f))
    page.wait_for_function("window.edgeformer.results.length > 0")
    _, logits = _python(digits_artifact, f)
    np.testing.assert_allclose(np.asarray(page.evaluate("window.edgeformer.results[0].logits")), logits, atol=1e-4)


def _y4m(path, frame_rgb: np.ndarray, frames: int = 10) -> None:
    """A YUV4MPEG2 (4:2:0, BT.601 limited range) video of one still frame, Chromium's fake-camera format."""
    rgb = frame_rgb.astype(np.float64)
    y = 16 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255
    cb = 128 + (-37.797 * rgb[..., 0] - 74.203 * rgb[..., 1] + 112.0 * rgb[..., 2]) / 255
    cr = 128 + (112.0 * rgb[..., 0] - 93.786 * rgb[..., 1] - 18.214 * rgb[..., 2]) / 255
    h, w = y.shape

    def sub(c):
        return c.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))

    planes = b"".join(np.clip(np.rint(p), 0, 255).astype(np.uint8).tobytes() for p in (y, sub(cb), sub(cr)))
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F10:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            f.write(b"FRAME\n" + planes)


def test_webcam_classifies_a_digit_shown_to_a_fake_camera(
    digits_artifact, samples, serve, launch, screenshots, tmp_path
) -> None:
    from PIL import Image

    # the held-out 7, upscaled smoothly to fill the middle of a 320x240 frame (what the 64-pixel crop keeps)
    digit = Image.open(samples / "digits" / "7-0.png").convert("RGB").resize((240, 240), Image.Resampling.BILINEAR)
    frame = Image.new("RGB", (320, 240))
    frame.paste(digit, (40, 0))
    video = tmp_path / "seven.y4m"
    _y4m(video, np.asarray(frame))
    url = serve([digits_artifact])
    page = open_page(launch(f"--use-file-for-fake-video-capture={video}"), url + "?backend=wasm")
    page.click("#camera")
    page.wait_for_function("window.edgeformer.results.filter(r => r.source === 'webcam').length >= 3")
    page.screenshot(path=str(screenshots / "webcam.png"), full_page=True)
    page.click("#camera")  # stop
    results = [r for r in page.evaluate("window.edgeformer.results") if r["source"] == "webcam"]
    import edgeformer

    p = edgeformer.load(digits_artifact, threads=1)
    for r in results:
        assert r["top"][0]["label"] == "7"
        x = np.asarray(r["input"], np.float32).reshape(p.input.shape[1:])[None]
        logits = p.session.run({p.input.name: x})[p.output.name][0]
        np.testing.assert_allclose(np.asarray(r["logits"]), logits, atol=1e-4, rtol=0)
