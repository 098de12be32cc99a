"""Write the seed corpus of every harness under ``fuzz/corpus/<name>/``: small real inputs, valid and near-valid.

Valid seeds come from the real writers (``onnx.helper`` and ``onnx.save``, ``numpy.save``, ``wave``, Pillow,
the records' own ``to_json``, a real device card and profile of the tiny fixture model); near-valid ones are the
same cut short or changed in one place, so that mutations start on both sides of each check. Crash inputs that
the harnesses found are kept apart, under ``fuzz/corpus/<name>/crash-*``, and this script leaves them alone.

Run from the repository root (needs the ``export`` extra for the torch checkpoint and the latency table)::

    python fuzz/make_corpus.py
"""

from __future__ import annotations

import dataclasses
import io
import json
import struct
import sys
import wave
import zipfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import CORPUS_DIR, FUZZ_DIR

FIXTURE = FUZZ_DIR.parent / "tests" / "fixtures"
TINY = FIXTURE / "tiny_image_artifact"


def put(name: str, file: str, data: bytes) -> None:
    path = CORPUS_DIR / name / file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def onnx_bytes(model: onnx.ModelProto) -> bytes:
    return model.SerializeToString()


def add_model(*, external: str | None = None, opset: int = 17) -> onnx.ModelProto:
    """y = x + W, W a 64-float initializer, stored inline or at ``external`` (``weights.bin`` holds bytes 0..255)."""
    w = numpy_helper.from_array(np.frombuffer(bytes(range(256)), dtype=np.float32).copy(), "W")
    if external is not None:
        w.ClearField("raw_data")
        w.data_location = TensorProto.EXTERNAL
        for k, v in (("location", external), ("offset", "0"), ("length", "256")):
            w.external_data.add(key=k, value=v)
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "W"], ["y"], name="add")],
        "add",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])],
        initializer=[w],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def modelfile() -> None:
    valid = onnx_bytes(add_model())
    put("modelfile", "add.onnx", valid)
    put("modelfile", "add-truncated.onnx", valid[: len(valid) // 2])
    put("modelfile", "add-external.onnx", onnx_bytes(add_model(external="weights.bin")))
    put("modelfile", "add-external-sub.onnx", onnx_bytes(add_model(external="sub/weights.bin")))
    put("modelfile", "add-external-escapes.onnx", onnx_bytes(add_model(external="../outside.bin")))
    put("modelfile", "add-external-symlink.onnx", onnx_bytes(add_model(external="link.bin")))
    put("modelfile", "add-external-hardlink.onnx", onnx_bytes(add_model(external="hard.bin")))
    put("modelfile", "add-opset-99.onnx", onnx_bytes(add_model(opset=99)))
    put("modelfile", "tiny-vit-with-manifest.onnx", (TINY / "model.onnx").read_bytes())
    put("modelfile", "image.png", _png(Image.new("RGB", (4, 4), (200, 30, 30))))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:  # the layout torch.save writes: <name>/data.pkl, <name>/data/0, ...
        for name, data in (("archive/data.pkl", b"\x80\x02}q\x00."), ("archive/version", b"3\n")):
            z.writestr(zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0)), data)  # fixed: same bytes every run
    put("modelfile", "checkpoint.pt", buf.getvalue())


def manifest() -> None:
    text = (TINY / "artifact.json").read_text(encoding="utf-8")
    put("manifest", "tiny-vit.json", text.encode())
    d = json.loads(text)
    d["files"]["model.onnx"] = "0" * 64
    put("manifest", "tiny-vit-wrong-sha.json", json.dumps(d).encode())
    d = json.loads(text)
    d["preprocessing"] = {"kind": "audio", "sample_rate": 16000, "clip_seconds": 1.0, "frontend": "host"}
    put("manifest", "tiny-vit-audio.json", json.dumps(d).encode())
    put("manifest", "schema-v1.json", (FIXTURE / "manifest_v1.json").read_bytes())
    put("manifest", "tiny-vit-truncated.json", text.encode()[: len(text) // 3])


def calib_arrays() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((4, 3, 4, 4)).astype(np.float32), rng.standard_normal((4, 8)).astype(np.float32)

    def npy(a, **kw) -> bytes:
        buf = io.BytesIO()
        np.save(buf, a, **kw)
        return buf.getvalue()

    def npz(compressed: bool = False, **arrays) -> bytes:
        buf = io.BytesIO()
        (np.savez_compressed if compressed else np.savez)(buf, **arrays)
        return buf.getvalue()

    put("calib_arrays", "x.npy", b"\0" + npy(x))
    put("calib_arrays", "x-float64.npy", b"\0" + npy(x.astype(np.float64)))
    put("calib_arrays", "x-uint8.npy", b"\0" + npy(x.astype(np.uint8)))
    put("calib_arrays", "x-wrong-shape.npy", b"\0" + npy(x.reshape(4, 3, 16)))
    put("calib_arrays", "x-pickled-objects.npy", b"\0" + npy(np.array([{"a": 1}], dtype=object), allow_pickle=True))
    put("calib_arrays", "x-truncated.npy", b"\0" + npy(x)[:150])
    put("calib_arrays", "xy.npz", b"\1" + npz(x=x, y=y))
    put("calib_arrays", "xy-compressed.npz", b"\1" + npz(True, x=x, y=y))
    put("calib_arrays", "x-only.npz", b"\1" + npz(x=x))
    put("calib_arrays", "xy-counts-differ.npz", b"\1" + npz(x=x, y=y[:3]))
    put("calib_arrays", "xy-truncated.npz", b"\1" + npz(x=x, y=y)[:300])


def predict_arrays() -> None:
    """The calibration arrays' seeds: their first byte means the same (.npy or .npz) to both harnesses."""
    for f in sorted((CORPUS_DIR / "calib_arrays").iterdir()):
        if not f.name.startswith("crash-"):
            put("predict_arrays", f.name, f.read_bytes())


def _wav(samples: np.ndarray, rate: int = 8000, width: int = 2, channels: int = 1) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        if width == 1:
            pcm = np.clip(samples * 127 + 128, 0, 255).astype(np.uint8).tobytes()
        elif width == 3:
            v = np.clip(samples * (2**23 - 1), -(2**23), 2**23 - 1).astype("<i4").tobytes()
            pcm = b"".join(v[i : i + 3] for i in range(0, len(v), 4))
        else:
            pcm = np.clip(samples * 32767, -32768, 32767).astype("<i2").tobytes()
        w.writeframes(pcm)
    return buf.getvalue()


def _float_wav(samples: np.ndarray, rate: int = 8000) -> bytes:
    """IEEE-float WAV (format 3), which the stdlib ``wave`` refuses before Python 3.12: the hand-read path."""
    data = samples.astype("<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, rate, rate * 4, 4, 32)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def calib_wav() -> None:
    t = np.arange(400) / 8000
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    put("calib_wav", "tone-16bit.wav", _wav(tone))
    put("calib_wav", "tone-8bit.wav", _wav(tone, width=1))
    put("calib_wav", "tone-24bit.wav", _wav(tone, width=3))
    put("calib_wav", "tone-stereo.wav", _wav(np.repeat(tone, 2), channels=2))
    put("calib_wav", "tone-float32.wav", _float_wav(tone))
    put("calib_wav", "tone-16khz.wav", _wav(tone, rate=16000))
    put("calib_wav", "tone-truncated.wav", _wav(tone)[:300])


def _png(img: Image.Image, **kw) -> bytes:
    return _encode(img, "PNG", **kw)


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def calib_image() -> None:
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8), "RGB")
    put("calib_image", "rgb.png", _png(rgb))
    put("calib_image", "gray.png", _png(rgb.convert("L")))
    put("calib_image", "gray-16bit.png", _png(Image.fromarray(rng.integers(0, 65536, (20, 24), dtype=np.uint16))))
    put("calib_image", "palette-transparent.png", _png(rgb.convert("P"), transparency=0))
    put("calib_image", "rgba.png", _png(rgb.convert("RGBA")))
    put("calib_image", "rgb.jpg", _encode(rgb, "JPEG", quality=50))
    put("calib_image", "cmyk.jpg", _encode(rgb.convert("CMYK"), "JPEG", quality=50))
    put("calib_image", "rgb.gif", _encode(rgb, "GIF"))
    put("calib_image", "rgb.bmp", _encode(rgb.resize((6, 5)), "BMP"))
    put("calib_image", "rgb.tiff", _encode(rgb.resize((6, 5)), "TIFF"))
    put("calib_image", "rgb.webp", _encode(rgb, "WEBP", quality=50))
    put("calib_image", "rgb-truncated.png", _png(rgb)[:200])


def table() -> None:
    from edgeformer.nas import SearchSpace
    from edgeformer.nas.blocks import segments
    from edgeformer.nas.build import table_keys
    from edgeformer.nas.table import Correction, Entry, LatencyTable, Whole, arch_dict
    from edgeformer.nas.timing import local_device

    space = SearchSpace.of("digits_shvit")
    entries = {}
    for k, (arch, path) in list(table_keys(space).items())[:3]:
        key = next(s.key for s in segments(space.zoo_model, arch, space.input_shape) if s.path == path)
        entries[k] = Entry(key=key, p50_ms=0.125, noise=0.02, rounds=3, runs=20, witness=path, measured=1.7e9)
    whole = Whole(arch=arch_dict(space.parent), p50_ms=0.9, noise=0.01, params=1000, macs=20000)
    corr = Correction(features=("const", "sum"), coef=(0.1, 0.05), fitted_on="6 models", residual_rms_ms=0.01)
    t = LatencyTable(
        model=space.model,
        zoo_model=space.zoo_model,
        width_step=space.width_step,
        device=local_device("ort", 1, "int8"),
        entries=entries,
        whole=(whole,),
        correction=corr,
        keys_total=len(table_keys(space)),
    )
    text = t.to_json().encode()
    put("table", "digits-shvit.json", text)
    put("table", "digits-shvit-truncated.json", text[: len(text) // 2])
    put("table", "digits-shvit-schema-2.json", text.replace(b'"schema": 1', b'"schema": 2'))
    put("table", "unknown-model.json", text.replace(b'"digits_shvit"', b'"no_such_model"'))
    put("records", "nas.table.LatencyTable", b"nas.table.LatencyTable\n" + text)


def plan() -> None:
    from edgeformer.quant.plan import PlanRecord

    record = PlanRecord(
        nodes_to_quantize=("/patch/Conv", "/attn/MatMul", "/head/Gemm"),
        reasons={"/attn/Softmax": "kept float: not quantizable", "/mlp/Gelu": "kept float: 1.04x slower as INT8"},
    )
    text = record.to_json().encode()
    put("plan", "plan.json", text)
    put("plan", "plan-empty.json", PlanRecord(nodes_to_quantize=()).to_json().encode())
    put("plan", "plan-truncated.json", text[: len(text) // 2])
    put("records", "quant.plan.PlanRecord", b"quant.plan.PlanRecord\n" + text)


def agent() -> None:
    from agent import BLOB_SHA

    spec = {"id": "0123456789abcdef0123456789abcdef", "files": {"model.onnx": BLOB_SHA}, "main": "model.onnx"}
    job = json.dumps(spec).encode()
    put("agent", "post-job.bin", b"POST jobs\0\0\0TOKEN\0=\0" + job)
    put("agent", "post-job-no-token.bin", b"POST jobs\0\0\0\0=\0" + job)
    put("agent", "post-job-wrong-token.bin", b"POST jobs\0\0\0Bearer not-the-token-0123456\0=\0" + job)
    traversal = json.dumps({**spec, "files": {"../model.onnx": BLOB_SHA}, "main": "../model.onnx"}).encode()
    put("agent", "post-job-traversal.bin", b"POST jobs\0\0\0TOKEN\0=\0" + traversal)
    folder = json.dumps({"id": spec["id"], "files": {"artifact.json": BLOB_SHA, "model.onnx": "a" * 64}}).encode()
    put("agent", "post-job-folder-missing-file.bin", b"POST jobs\0\0\0TOKEN\0=\0" + folder)
    profile = json.dumps({**spec, "config": {"warmup": 1, "runs": 5}, "backend": "ort"}).encode()
    put("agent", "post-job-config.bin", b"POST jobs\0\0\0TOKEN\0\0" + profile)
    put("agent", "put-model.bin", b"PUT models\0=\0\0TOKEN\0=\0" + b"model bytes\n")
    put("agent", "put-model-wrong-sha.bin", b"PUT models\0" + BLOB_SHA.encode() + b"\0\0TOKEN\0=\0other bytes")
    put("agent", "put-model-huge-length.bin", b"PUT models\0=\0\0TOKEN\0999999999999\0abc")
    put("agent", "get-model.bin", b"GET models\0" + BLOB_SHA.encode() + b"\0\0TOKEN\0\0")
    put("agent", "get-job-wait.bin", b"GET jobs\0" + b"f" * 32 + b"\0wait=1.5\0TOKEN\0\0")
    put("agent", "delete-job.bin", b"DELETE jobs\0" + b"f" * 32 + b"\0\0TOKEN\0\0")
    put("agent", "device.bin", b"device\0\0\0\0\0agent://pi5:8765")
    put("agent", "device-ipv6.bin", b"device\0\0\0\0\0agent://[::1]:8765")
    put("agent", "device-bad-port.bin", b"device\0\0\0\0\0agent://pi5:99999")


def records() -> None:
    """Every record that a real writer produces here, plus every record whose defaults make one."""
    from records import RECORDS

    from edgeformer.profiling import ProfileConfig, device_card, profile

    def rec(obj, suffix: str = "") -> None:
        name = next(k for k, c in RECORDS.items() if c is type(obj))
        put("records", name + suffix, f"{name}\n".encode() + obj.to_json().encode())

    from edgeformer.artifact import Artifact

    rec(Artifact.load(TINY).manifest)
    rec(device_card())
    result = profile(TINY, config=ProfileConfig(warmup=1, runs=5))  # timings differ run to run: a new seed each time
    rec(result)
    for _name, cls in RECORDS.items():
        try:
            obj = cls()
        except Exception:  # required fields, or a default that needs a device: the seeds above cover those
            continue
        rec(obj)
    m = Artifact.load(TINY).manifest
    rec(dataclasses.replace(m, lineage=dataclasses.replace(m.lineage, arch={"depths": [1, 2]})), "-arch")


def main() -> None:
    for fn in (modelfile, manifest, calib_arrays, predict_arrays, calib_wav, calib_image, table, plan, agent, records):
        fn()
    n = sum(1 for p in CORPUS_DIR.rglob("*") if p.is_file())
    size = sum(p.stat().st_size for p in CORPUS_DIR.rglob("*") if p.is_file())
    print(f"{n} seed files, {size / 1024:.0f} KiB, in {CORPUS_DIR}")


if __name__ == "__main__":
    main()
