"""apps/web/preprocess.js, run by Node on random images, equals edgeformer's Pillow pipeline bit for bit: every
interpolation, up- and down-scaling, crop_pct < 1, one and three channels."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from edgeformer.data.images import preprocess_image
from edgeformer.inputs import ImageInput

from .conftest import WEB_ROOT

CASES = [  # (width, height, interpolation, resolution, crop_pct, channels)
    (8, 8, "bilinear", 64, 1.0, 3),
    (300, 200, "bicubic", 224, 0.95, 3),
    (97, 131, "bilinear", 64, 0.875, 1),
    (640, 480, "nearest", 32, 0.9, 3),
    (50, 70, "bicubic", 96, 1.0, 1),
    (64, 64, "bicubic", 64, 1.0, 3),
]

_RUNNER = """
import { imageTensor } from "./preprocess.mjs";
import fs from "node:fs";
const dir = process.argv[2];
const cases = JSON.parse(fs.readFileSync(`${dir}/cases.json`));
cases.forEach((c, i) => {
  const rgba = new Uint8ClampedArray(fs.readFileSync(`${dir}/rgba${i}.bin`));
  const x = imageTensor(rgba, c.w, c.h, c.spec);
  fs.writeFileSync(`${dir}/js${i}.bin`, Buffer.from(x.buffer));
});
"""


def test_javascript_preprocessing_equals_pillow_bit_for_bit(tmp_path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed (apt-get install nodejs); npm needs it for apps/web too")
    rng = np.random.default_rng(0)
    cases, want = [], []
    for i, (w, h, interp, res, crop, ch) in enumerate(CASES):
        rgba = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
        rgba[..., 3] = 255  # opaque: canvas pixels carry no premultiplication loss
        spec = ImageInput(
            resolution=res,
            channels=ch,
            mean=(0.485, 0.456, 0.406)[:ch],
            std=(0.229, 0.224, 0.225)[:ch],
            crop_pct=crop,
            interpolation=interp,
        )
        rgba.tofile(tmp_path / f"rgba{i}.bin")
        want.append(preprocess_image(Image.fromarray(rgba[..., :3]), spec))
        cases.append({"w": w, "h": h, "spec": spec.to_dict()})
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    # the page's own file, copied as an ES module (.mjs) beside a runner that imports it
    shutil.copy(WEB_ROOT / "preprocess.js", tmp_path / "preprocess.mjs")
    (tmp_path / "run.mjs").write_text(_RUNNER)
    subprocess.run([node, str(tmp_path / "run.mjs"), str(tmp_path)], check=True, capture_output=True, timeout=120)
    for i, x in enumerate(want):
        got = np.fromfile(tmp_path / f"js{i}.bin", dtype=np.float32)
        np.testing.assert_array_equal(got, x.reshape(-1), err_msg=str(CASES[i]))
