"""The parsers' fuzz harnesses (``fuzz/``): every seed replayed, a bounded atheris run each, and each crash the
harnesses found kept as a regression test.

Replaying runs every file of ``fuzz/corpus/<name>/`` through the harness's ``test_one_input`` in this process:
fast and deterministic, and it holds the inputs of past crashes (``crash-*``), so a fix that regresses fails
here. The bounded run starts ``python fuzz/<name>.py -max_total_time=S`` in a subprocess, ``S`` from
``$EDGEFORMER_FUZZ_SECONDS`` (CI sets 60; a developer's run uses 5), and fails on any crash, hang or
out-of-memory, printing the input that caused it.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from edgeformer.agent.server import AgentConfig, create_app
from edgeformer.agent.store import ModelStore
from edgeformer.artifact import Artifact
from edgeformer.compile.tensorrt import TensorRtConfig
from edgeformer.data.audio import AudioFileError, read_wav
from edgeformer.data.images import load_image, preprocess_image
from edgeformer.errors import CalibrationError, ConfigError, InvalidInputError, LatencyTableError, ModelFileError
from edgeformer.inputs import ImageInput
from edgeformer.manifest import TensorSpec
from edgeformer.modelfile import manifest_for_bare_file
from edgeformer.nas.table import read_table
from edgeformer.quant.calibration import open_calibration
from edgeformer.quant.config import QuantConfig
from edgeformer.quant.plan import load_plan
from edgeformer.runtimes.arrays import read_array_file

REPO = Path(__file__).resolve().parents[1]
FUZZ = REPO / "fuzz"
HARNESSES = (
    "modelfile",
    "manifest",
    "calib_arrays",
    "predict_arrays",
    "calib_wav",
    "calib_image",
    "table",
    "plan",
    "agent",
    "records",
)
SECONDS = int(os.environ.get("EDGEFORMER_FUZZ_SECONDS", "5"))

pytest.importorskip("atheris", reason="atheris (the test extra) has wheels for Linux only")


@pytest.fixture(scope="module")
def harness():
    """Import ``fuzz/<name>.py`` as ``fuzz_<name>``: plain ``agent`` or ``table`` could be other modules here
    (``tests/agent`` is a package named ``agent`` under pytest's rootdir imports)."""
    sys.path.insert(0, str(FUZZ))  # for their ``from _harness import ...``

    def load(name: str):
        spec = importlib.util.spec_from_file_location(f"fuzz_{name}", FUZZ / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    try:
        yield load
    finally:
        sys.path.remove(str(FUZZ))


def test_every_harness_has_a_seed_corpus_and_the_harness_files_match_the_list():
    assert sorted(
        p.stem for p in FUZZ.glob("*.py") if not p.name.startswith("_") and p.stem != "make_corpus"
    ) == sorted(HARNESSES)
    for name in HARNESSES:
        seeds = [p for p in (FUZZ / "corpus" / name).iterdir() if not p.name.startswith("crash-")]
        assert len(seeds) >= 3, name


@pytest.mark.parametrize("name", HARNESSES)
def test_every_corpus_file_replays_through_its_harness(harness, name):
    h = harness(name)
    files = sorted((FUZZ / "corpus" / name).iterdir())
    for f in files:
        try:
            h.test_one_input(f.read_bytes())
        except Exception as e:
            pytest.fail(f"fuzz/corpus/{name}/{f.name}: {type(e).__name__}: {e}")


_DONE = re.compile(r"Done (\d+) runs in (\d+) second")
_CRASH = re.compile(r"(crash|timeout|oom|leak)-[0-9a-f]{40}")


@pytest.mark.parametrize("name", HARNESSES)
def test_a_bounded_fuzz_run_finds_no_crash(name, tmp_path):
    """``$EDGEFORMER_FUZZ_SECONDS`` of atheris on one harness, niced; new corpus entries go to ``tmp_path``."""
    work = tmp_path / "corpus"
    work.mkdir()
    cmd = [
        sys.executable,
        str(FUZZ / f"{name}.py"),
        f"-max_total_time={SECONDS}",
        "-timeout=30",
        f"-artifact_prefix={tmp_path}/",
        "-print_final_stats=1",
        str(work),
        str(FUZZ / "corpus" / name),
    ]
    # generous: start-up (torch for the table and records harnesses) and the seeds' first pass come on top
    proc = subprocess.run(
        ["nice", "-n", "10", *cmd], cwd=FUZZ, capture_output=True, text=True, timeout=SECONDS * 3 + 180
    )
    log = proc.stdout + proc.stderr
    found = sorted(tmp_path.glob("*-*"))
    found = [p for p in found if _CRASH.fullmatch(p.name)]
    if proc.returncode != 0 or found:
        inputs = "\n".join(f"{p.name}: {p.read_bytes()[:2000]!r}" for p in found)
        pytest.fail(f"fuzz/{name}.py exited {proc.returncode}:\n{log[-6000:]}\nfailing input(s):\n{inputs}")
    assert _DONE.search(log), log[-3000:]


# --- regressions: each crash the harnesses found, pinned on the parser itself ------------------------------------
def _artifact_with_manifest(folder: Path, text: str) -> Path:
    folder.mkdir()
    (folder / "artifact.json").write_text(text, encoding="utf-8")
    return folder


_MINIMAL = {"format": "onnx", "precision": "fp32", "model_name": "m", "main_file": "m.onnx"}


def _manifest(**fields) -> str:
    return json.dumps({**_MINIMAL, **fields})


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        # fuzz/corpus/manifest/crash-v1-extra-not-an-object.json: dict("TT") in the v1 upgrade (ValueError)
        (_manifest(extra="TT"), "extra"),
        (_manifest(extra={"runtime": [1]}), "extra.runtime"),
        # crash-nested-past-the-recursion-limit.json: json.loads raised RecursionError
        ("[" * 100_000 + "]" * 100_000, "corrupt manifest"),
        # an int json.loads cannot convert (ValueError, not JSONDecodeError)
        ('{"schema_version": ' + "1" * 5000 + "}", "corrupt manifest"),
        # crash-preprocessing-kind-a-list.json: a dict lookup with a list key (TypeError)
        (_manifest(schema_version=2, preprocessing={"kind": ["image"]}), "not an image or audio spec"),
    ],
)
def test_a_corrupt_manifest_is_a_model_file_error(tmp_path, text, needle):
    with pytest.raises(ModelFileError, match=re.escape(needle)):
        Artifact.load(_artifact_with_manifest(tmp_path / "art", text))


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"schema": ' + "1" * 5000 + "}"])
def test_a_latency_table_nested_too_deep_or_with_a_huge_int_is_corrupt(tmp_path, text):
    # fuzz/corpus/table/crash-nested-past-the-recursion-limit.json: read_table raised RecursionError
    path = tmp_path / "table.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(LatencyTableError, match="corrupt latency table"):
        read_table(path)


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"resolution": ' + "1" * 5000 + "}"])
def test_a_record_file_nested_too_deep_or_with_a_huge_int_is_a_config_error(text):
    # fuzz/corpus/records/crash-nested-past-the-recursion-limit: Record.from_json raised RecursionError
    with pytest.raises(ConfigError, match="not valid JSON"):
        ImageInput.from_json(text, where="spec.json")


def test_a_timing_cache_name_the_os_refuses_is_a_config_error():
    # fuzz/corpus/records/crash-tensorrt-timing-cache-name-too-long: is_dir() raised OSError (ENAMETOOLONG)
    with pytest.raises(ConfigError, match="timing_cache must be a file path"):
        TensorRtConfig(timing_cache=Path("a" * 300))


def _agent_request(harness, tmp_path, method: str, path: str, body: bytes, headers=()) -> tuple[int, dict]:
    """One request to the agent's real ASGI app, in-process, as the agent harness sends it."""
    h = harness("agent")
    store = ModelStore(tmp_path / "store", cap_bytes=1 << 20, max_upload_bytes=1 << 16)
    try:
        app = create_app(AgentConfig(store=tmp_path / "store", token=h.TOKEN), store)
        auth = [(b"authorization", f"Bearer {h.TOKEN}".encode())]
        status, reply = asyncio.run(h._request(app, method, path, path, b"", [*auth, *headers], body))
    finally:
        store.close()
    return status, json.loads(reply)


def test_the_agent_answers_400_to_a_job_nested_past_the_recursion_limit(harness, tmp_path):
    # fuzz/corpus/agent/crash-job-nested-past-the-recursion-limit.bin: RecursionError, answered 500 "agent bug"
    status, reply = _agent_request(harness, tmp_path, "POST", "/v1/jobs", b"[" * 30_000 + b"]" * 30_000)
    assert status == 400 and "not valid JSON" in reply["error"]["message"]


@pytest.mark.parametrize("declared", ["9\xb9".encode("latin-1"), b"1" * 5000])
def test_the_agent_refuses_a_content_length_int_cannot_read(harness, tmp_path, declared):
    # fuzz/corpus/agent/crash-content-length-superscript-digit.bin: "9¹" passed isdigit() and int() raised (500);
    # 5000 digits: int() refuses past 4300 (seen while writing this test, not by the fuzzer)
    sha = hashlib.sha256(b"abc").hexdigest()
    status, reply = _agent_request(
        harness, tmp_path, "PUT", f"/v1/models/{sha}", b"abc", headers=[(b"content-length", declared)]
    )
    assert status == 413 and "limit" in reply["error"]["message"]


@pytest.mark.parametrize("crash", sorted(p.name for p in (FUZZ / "corpus" / "calib_arrays").glob("crash-*")))
def test_a_corrupt_calibration_array_file_is_a_calibration_error(tmp_path, crash):
    # each crash-* of fuzz/corpus/calib_arrays escaped ArraySource as TokenError, NotImplementedError,
    # OverflowError, SyntaxError or AttributeError (an npz member that is no .npy); its first byte picks .npy
    # (even) or .npz (odd), as in the harness
    data = (FUZZ / "corpus" / "calib_arrays" / crash).read_bytes()
    npz = data[0] & 1
    path = tmp_path / ("calib.npz" if npz else "calib.npy")
    path.write_bytes(data[1:])
    x = TensorSpec(name="x", shape=(1, 3, 4, 4), dtype="float32")
    inputs = [x, TensorSpec(name="y", shape=("batch", 8), dtype="float32")] if npz else [x]
    with pytest.raises(CalibrationError, match=r"cannot read calibration arrays|not a \.npy array"):
        open_calibration(path, inputs=inputs, preprocessing=None, config=QuantConfig(calib_size=4, fidelity_samples=1))


def test_a_wav_whose_chunk_size_runs_past_its_end_is_an_audio_file_error():
    # fuzz/corpus/calib_wav/crash-chunk-size-past-its-end.wav: the stdlib's chunk reader raised RuntimeError
    with pytest.raises(AudioFileError, match="corrupt WAV file"):
        read_wav(FUZZ / "corpus" / "calib_wav" / "crash-chunk-size-past-its-end.wav")


def test_an_image_pillow_cannot_decode_is_invalid_input():
    # fuzz/corpus/calib_image/crash-tiff-rational-where-an-int-goes.tif: the TIFF reader raised TypeError
    with pytest.raises(InvalidInputError, match="cannot read the image"):
        load_image(
            FUZZ / "corpus" / "calib_image" / "crash-tiff-rational-where-an-int-goes.tif", ImageInput(resolution=16)
        )


def test_an_image_whose_resize_would_pass_the_pixel_limit_is_refused():
    # fuzz/corpus/calib_image/oom-tiff-6x8847365.tif: 230 bytes, resized to 16x23592973 it took 3.7 GB
    with pytest.raises(InvalidInputError, match="less extreme aspect ratio"):
        preprocess_image(Image.new("L", (1, Image.MAX_IMAGE_PIXELS // 8)), ImageInput(resolution=16, crop_pct=1.0))


@pytest.mark.parametrize(
    ("crash", "needle"),
    [  # each escaped manifest_for_bare_file (what every command loads a bare model with) as another exception
        ("crash-zip-version-unsupported.pt", "truncated zip archive"),  # NotImplementedError from zipfile
        ("crash-field-length-past-seek-range.onnx", "truncated ONNX model"),  # seek() past its range: ValueError
        ("crash-embedded-manifest-not-utf8.onnx", "embedded edgeformer manifest is corrupt"),  # UnicodeDecodeError
        ("crash-checker-message-not-utf8.onnx", "not valid UTF-8"),  # UnicodeDecodeError from the checker
        ("crash-checker-invalid-tensor-type.onnx", "Invalid tensor data type 111"),  # ValueError from the checker
        ("crash-external-location-not-utf8.onnx", "not UTF-8 text"),  # TypeError: a bytes location
        ("crash-external-tensor-name-not-utf8.onnx", "not UTF-8 text"),  # TypeError in onnx's data loader
    ],
)
def test_a_malformed_model_file_is_a_model_file_error(tmp_path, crash, needle):
    model = tmp_path / "model.onnx"
    model.write_bytes((FUZZ / "corpus" / "modelfile" / crash).read_bytes())
    (tmp_path / "weights.bin").write_bytes(bytes(range(256)))  # what the external-data crashes name
    with pytest.raises(ModelFileError, match=re.escape(needle)):
        manifest_for_bare_file(model)


@pytest.mark.parametrize("crash", sorted(p.name for p in (FUZZ / "corpus" / "predict_arrays").glob("crash-*")))
def test_a_corrupt_array_file_for_predict_is_invalid_input(tmp_path, crash):
    # the calib_arrays crash inputs, replayed through predict's reader, escaped it as TokenError, SyntaxError
    # and NotImplementedError too
    data = (FUZZ / "corpus" / "predict_arrays" / crash).read_bytes()
    path = tmp_path / ("input.npz" if data[0] & 1 else "input.npy")
    path.write_bytes(data[1:])
    with pytest.raises(InvalidInputError, match="not a readable numpy array file"):
        read_array_file(path)


def test_an_npz_member_that_is_not_npy_is_refused_by_calibration_and_predict(tmp_path):
    # fuzz/corpus/calib_arrays/crash-npz-member-not-npy.npz: np.load hands back such a member's raw bytes, which
    # calibration then asked for a dtype (AttributeError) and predict returned as its "array"
    path = tmp_path / "input.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x", b"not an array")
    with pytest.raises(InvalidInputError, match=r"not a \.npy array"):
        read_array_file(path)
    x = TensorSpec(name="x", shape=(1, 3, 4, 4), dtype="float32")
    with pytest.raises(CalibrationError, match=r"not a \.npy array"):
        open_calibration(path, inputs=[x], preprocessing=None, config=QuantConfig(calib_size=4, fidelity_samples=1))


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"nodes_to_quantize": ' + "1" * 5000 + "}"])
def test_a_plan_nested_too_deep_or_with_a_huge_int_is_invalid_input(tmp_path, text):
    # fuzz/corpus/plan/crash-nested-past-the-recursion-limit.json: load_plan raised RecursionError
    path = tmp_path / "plan.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InvalidInputError, match="not JSON"):
        load_plan(path)
