"""apps/classify: a folder, a video file (what a webcam delivers, through OpenCV) and the contact sheet."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from .conftest import load_app


@pytest.fixture(scope="module")
def classify():
    return load_app("classify/classify.py")


def test_a_folder_gets_the_predict_top_k_a_throughput_and_a_contact_sheet(
    classify, digits_artifact, samples, tmp_path, capsys
) -> None:
    import edgeformer

    sheet = tmp_path / "sheet.png"
    assert (
        classify.main([str(digits_artifact), "--folder", str(samples / "digits"), "-k", "2", "--sheet", str(sheet)])
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    files = sorted((samples / "digits").glob("*.png"))
    p = edgeformer.load(digits_artifact)
    for f, line in zip(files, lines, strict=False):
        top = p.predict(f, top_k=2)
        assert line.split()[1:] == [f.name, top[0].label, f"{top[0].score:.3f}", top[1].label, f"{top[1].score:.3f}"]
        assert line.startswith("✓" if top[0].label == f.name[0] else "✗")
    right = sum(p.predict(f, top_k=1)[0].label == f.name[0] for f in files)
    assert lines[-1].startswith(f"{len(files)} images at ") and f"top-1 {right}/{len(files)} by file name" in lines[-1]
    with Image.open(sheet) as img:
        assert img.size == (min(8, len(files)) * 136, -(-len(files) // 8) * 156)
        assert np.asarray(img.convert("RGB")).std() > 10  # thumbnails were drawn, not a blank page


def test_video_frames_are_classified_like_a_webcam(classify, digits_artifact, samples, tmp_path, capsys) -> None:
    cv2 = pytest.importorskip("cv2", reason="the webcam path needs opencv-python-headless (test extra)")
    video = tmp_path / "digits.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (128, 128))
    digits = ("3-0.png", "7-0.png")
    for name in digits:
        frame = Image.open(samples / "digits" / name).convert("RGB").resize((128, 128), Image.Resampling.BILINEAR)
        for _ in range(3):
            writer.write(cv2.cvtColor(np.asarray(frame), cv2.COLOR_RGB2BGR))
    writer.release()
    sheet = tmp_path / "frames.png"
    assert (
        classify.main([str(digits_artifact), "--video", str(video), "--frames", "5", "--json", "--sheet", str(sheet)])
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert [r["source"] for r in out["results"]] == [f"frame {i}" for i in range(5)]  # --frames caps the 6
    assert [r["top"][0]["label"] for r in out["results"]] == ["3", "3", "3", "7", "7"]
    assert out["images_per_second"] > 0 and sheet.is_file()


def test_what_cannot_be_classified_exits_with_its_code(classify, digits_artifact, kws_artifact, tmp_path, capsys):
    assert classify.main([str(kws_artifact), "--folder", str(tmp_path)]) == 2  # an audio model
    assert classify.main([str(digits_artifact), "--folder", str(tmp_path / "missing")]) == 3
    assert classify.main([str(digits_artifact), "--folder", str(tmp_path)]) == 3  # no images in it
    assert classify.main([str(digits_artifact), "--video", str(tmp_path / "missing.avi")]) == 5
    err = capsys.readouterr().err.splitlines()
    assert [line.split(":")[0] for line in err] == ["error (ConfigError)", "error (InvalidInputError)"] * 1 + [
        "error (InvalidInputError)",
        "error (BackendUnavailableError)",
    ]
