"""INT8 artifacts in the browser: onnxruntime-web applies its own INT8 kernels, so the contract is top-1 agreement
with Python onnxruntime and a high cosine, not bit equality (slow: quantizing takes about a minute per model)."""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import feed_files, locked, open_page

pytestmark = pytest.mark.slow


def _quantized(shared_dir, artifact, calib, name):
    import edgeformer

    out = shared_dir / name
    with locked(shared_dir / f"{name}.lock"):
        if not (out / "artifact.json").is_file():
            edgeformer.quantize(artifact, edgeformer.QuantConfig(), calib=calib, out=out)
    return out


def _cosine(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("threads", [1, 2])
def test_int8_digits_agree_with_python_onnxruntime(threads, shared_dir, digits_artifact, samples, serve, launch):
    import edgeformer

    q = _quantized(shared_dir, digits_artifact, samples / "digits", "digits_int8")
    assert edgeformer.Artifact.load(q).precision == "int8"
    page = open_page(launch(), serve([q]) + f"?backend=wasm&threads={threads}")
    assert page.evaluate("window.edgeformer.info.threads") == threads
    p = edgeformer.load(q, threads=1)
    files = sorted((samples / "digits").glob("*.png"))
    for f, r in zip(files, feed_files(page, "#file", files), strict=True):
        x = p.preprocess(f)
        np.testing.assert_array_equal(np.asarray(r["input"], np.float32), x.reshape(-1))
        want = p.session.run({p.input.name: x})[p.output.name][0]
        assert int(np.argmax(r["logits"])) == int(np.argmax(want)), f.name
        assert _cosine(r["logits"], want) >= 0.99, f.name


def test_int8_keywords_agree_with_python_onnxruntime(shared_dir, kws_artifact, samples, serve, launch):
    import edgeformer

    q = _quantized(shared_dir, kws_artifact, samples / "keywords", "keywords_int8")
    page = open_page(launch(), serve([q]) + "?backend=wasm&threads=2")
    p = edgeformer.load(q, threads=1)
    files = sorted((samples / "keywords").glob("*.wav"))
    for f, r in zip(files, feed_files(page, "#wav", files), strict=True):
        want = p.session.run({p.input.name: p.preprocess(f)})[p.output.name][0]
        assert int(np.argmax(r["logits"])) == int(np.argmax(want)), f.name
        assert _cosine(r["logits"], want) >= 0.99, f.name
