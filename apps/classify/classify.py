"""Classify a folder of images, a video file or the webcam with an edgeformer artifact; torch-free.

Usage::

    python apps/classify/classify.py ARTIFACT --folder samples/digits --sheet sheet.png
    python apps/classify/classify.py ARTIFACT --camera 0 --frames 100   # pip install opencv-python-headless
    python apps/classify/classify.py ARTIFACT --video clip.mp4 --sheet sheet.png

Prints the top-k of every image (or frame), the throughput in images per second (preprocessing and inference,
the way ``edgeformer.load(...).predict`` runs them), and writes a contact sheet PNG: each image with its top-1
label and score, framed green or red when the file name starts with the true label (``7-0.png``, as
``edgeformer samples`` names them), grey otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps

import edgeformer
from edgeformer.data.images import IMAGE_SUFFIXES, open_image
from edgeformer.errors import BackendUnavailableError, ConfigError, EdgeformerError, InvalidInputError

THUMB = 128


@dataclass(frozen=True)
class Result:
    """One classified image or frame: where it came from, its top-k, and its pixels for the sheet."""

    source: str
    top: list  # list[edgeformer.runtimes.Prediction]
    image: Image.Image
    truth: str | None  # the label a file name starts with, when it is one of the model's labels

    @property
    def correct(self) -> bool | None:
        return None if self.truth is None else self.top[0].label == self.truth


def folder_images(folder: Path) -> Iterator[tuple[str, Image.Image]]:
    """The images of ``folder`` in name order, as RGB.

    Raises:
        InvalidInputError: no such folder, or no image in it.
    """
    if not folder.is_dir():
        raise InvalidInputError(f"{folder}: no such folder.")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InvalidInputError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}).")
    for f in files:
        yield f.name, open_image(f)  # RGB, or InvalidInputError naming a truncated or corrupt file


def video_frames(source: int | str, frames: int) -> Iterator[tuple[str, Image.Image]]:
    """Up to ``frames`` RGB frames of a camera (an index) or a video file, through OpenCV.

    Raises:
        BackendUnavailableError: OpenCV is not installed, or the camera or file cannot be opened.
    """
    try:
        import cv2
    except ImportError as e:
        raise BackendUnavailableError(
            "the webcam and video files need OpenCV: pip install opencv-python-headless (or use --folder)."
        ) from e
    cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        what = f"camera {source}" if isinstance(source, int) else f"video {source}"
        raise BackendUnavailableError(f"cannot open {what}; check the device index or the file, or use --folder.")
    try:
        for i in range(frames):
            ok, bgr = cap.read()
            if not ok:
                break
            yield f"frame {i}", Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    finally:
        cap.release()


def classify(predictor, images: Iterator[tuple[str, Image.Image]], top_k: int = 3) -> tuple[list[Result], float]:
    """Top-k of every image; returns the results and the images per second of ``predict`` alone."""
    labels = set(predictor.labels or ())
    results, busy = [], 0.0
    for name, img in images:
        t0 = time.perf_counter()
        top = predictor.predict(np.asarray(img), top_k=top_k)
        busy += time.perf_counter() - t0
        truth = name.split("-")[0] if "-" in name else None
        results.append(Result(name, top, img, truth if truth in labels else None))
    if not results:
        raise InvalidInputError("no image or frame was read; check the source.")
    return results, len(results) / busy


def contact_sheet(results: list[Result], columns: int = 8) -> Image.Image:
    """A grid of thumbnails, each with its top-1 label and score; green/red frames when the truth is known."""
    rows = -(-len(results) // columns)
    cell_w, cell_h = THUMB + 8, THUMB + 28
    sheet = Image.new("RGB", (min(columns, len(results)) * cell_w, rows * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    for i, r in enumerate(results):
        x, y = (i % columns) * cell_w, (i // columns) * cell_h
        small = max(r.image.size) < THUMB  # tiny inputs (8x8 digits) stay blocky rather than blurred
        method = Image.Resampling.NEAREST if small else Image.Resampling.BICUBIC
        thumb = ImageOps.contain(r.image, (THUMB, THUMB), method)
        sheet.paste(thumb, (x + 4 + (THUMB - thumb.width) // 2, y + 4 + (THUMB - thumb.height) // 2))
        color = {True: (34, 139, 34), False: (200, 30, 30), None: (150, 150, 150)}[r.correct]
        draw.rectangle((x + 2, y + 2, x + cell_w - 3, y + THUMB + 5), outline=color, width=2)
        draw.text((x + 4, y + THUMB + 9), f"{r.top[0].label} {r.top[0].score:.2f}  {r.source[:12]}", fill=color)
    return sheet


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("artifact", help="an image classifier artifact, e.g. from `edgeformer export digits_shvit`")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--folder", type=Path, help="a folder of images")
    src.add_argument("--camera", type=int, help="a webcam index (OpenCV)")
    src.add_argument("--video", type=Path, help="a video file (OpenCV)")
    ap.add_argument("--frames", type=int, default=100, help="frames to classify from the camera or video")
    ap.add_argument("-k", "--top-k", type=int, default=3)
    ap.add_argument("--sheet", type=Path, help="write a contact sheet PNG here")
    ap.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of lines")
    args = ap.parse_args(argv)
    try:
        predictor = edgeformer.load(args.artifact, threads=args.threads)
        if predictor.kind != "image":
            raise ConfigError(f"{args.artifact} is not an image classifier (its input is {predictor.kind}).")
        if args.folder:
            images = folder_images(args.folder)
        else:
            images = video_frames(args.camera if args.video is None else str(args.video), args.frames)
        results, fps = classify(predictor, images, args.top_k)
        if args.sheet:
            contact_sheet(results).save(args.sheet)
    except EdgeformerError as e:
        print(f"error ({type(e).__name__}): {e}", file=sys.stderr)
        return e.exit_code
    known = [r for r in results if r.correct is not None]
    if args.json:
        rows = [{"source": r.source, "top": [p.to_dict() for p in r.top], "truth": r.truth} for r in results]
        print(json.dumps({"results": rows, "images_per_second": round(fps, 2)}))
        return 0
    for r in results:
        mark = {True: "✓", False: "✗", None: " "}[r.correct]
        print(f"{mark} {r.source:<24} " + "  ".join(f"{p.label} {p.score:.3f}" for p in r.top))
    accuracy = f", top-1 {sum(r.correct for r in known)}/{len(known)} by file name" if known else ""
    sheet = f"; contact sheet {args.sheet}" if args.sheet else ""
    print(f"{len(results)} images at {fps:.1f} images/s{accuracy}{sheet}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
