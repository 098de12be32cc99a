"""Image preprocessing: explicit mode conversions, timm's resize/crop geometry, clear errors for bad files."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from PIL import Image

from edgeformer.data.images import as_image_input, load_image, load_image_batch, open_image, preprocess_image
from edgeformer.errors import ConfigError, InvalidInputError, ModelFileError
from edgeformer.inputs import AudioInput, ImageInput

SPEC = ImageInput(resolution=32, crop_pct=1.0)
MEAN, STD = np.array(SPEC.mean, np.float32), np.array(SPEC.std, np.float32)


def _noise(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _normalize(hwc_uint8):
    return ((hwc_uint8.astype(np.float32) / 255 - MEAN) / STD).transpose(2, 0, 1)


def test_no_resize_needed_matches_numpy_center_crop_and_normalize():
    a = _noise(40, 32)  # shorter side already 32 (crop_pct 1): only the crop moves pixels
    x = load_image(a, SPEC)
    assert x.shape == (1, 3, 32, 32) and x.dtype == np.float32 and x.flags.c_contiguous
    np.testing.assert_allclose(x[0], _normalize(a[4:36]), rtol=1e-6, atol=1e-6)


def test_resize_shorter_side_to_resolution_over_crop_pct_then_center_crop():
    spec = ImageInput(resolution=32, crop_pct=0.875, interpolation="bilinear")
    img = Image.fromarray(_noise(48, 64))
    # floor(32 / 0.875) = 36: 64x48 -> 48x36, crop offsets (8, 2)
    expected = np.asarray(img.resize((48, 36), Image.Resampling.BILINEAR))[2:34, 8:40]
    np.testing.assert_allclose(preprocess_image(img, spec), _normalize(expected), rtol=1e-6, atol=1e-6)


def test_the_recorded_interpolation_is_used():
    img = Image.fromarray(_noise(50, 50))
    near = preprocess_image(img, ImageInput(resolution=32, crop_pct=1.0, interpolation="nearest"))
    cubic = preprocess_image(img, ImageInput(resolution=32, crop_pct=1.0, interpolation="bicubic"))
    np.testing.assert_allclose(near, _normalize(np.asarray(img.resize((32, 32), Image.Resampling.NEAREST))), atol=1e-6)
    assert np.abs(near - cubic).max() > 0.1


def test_cmyk_is_converted_to_rgb(tmp_path, caplog):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (40, 40), (0, 255, 255, 0)).save(path, quality=95)  # pure red in CMYK
    assert Image.open(path).mode == "CMYK"
    with caplog.at_level(logging.DEBUG, logger="edgeformer.data.images"):
        rgb = np.asarray(open_image(path)).astype(int)
    assert (np.abs(rgb - [255, 0, 0]) <= 3).all()
    assert "converted CMYK image to RGB" in caplog.text


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path, caplog):
    path = tmp_path / "deep.png"
    values = np.array([[0, 257 * 128], [257 * 200, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")
    with caplog.at_level(logging.DEBUG, logger="edgeformer.data.images"):
        rgb = np.asarray(open_image(path))
    np.testing.assert_array_equal(rgb[..., 0], [[0, 128], [200, 255]])
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])
    assert "16-bit" in caplog.text
    wide = Image.fromarray(values).convert("I")  # 32-bit container of 16-bit data
    np.testing.assert_array_equal(np.asarray(open_image(wide)), rgb)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "1"])
def test_grayscale_palette_and_alpha_become_rgb(tmp_path, mode):
    src = Image.fromarray(_noise(20, 24)).convert(mode)
    path = tmp_path / f"img_{mode}.png"
    src.save(path)
    out = open_image(path)
    assert out.mode == "RGB" and out.size == (24, 20)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(src.convert("RGB")))


def test_grayscale_image_gives_equal_channels_before_normalization():
    gray = np.random.default_rng(1).integers(0, 256, (32, 32), dtype=np.uint8)
    x = load_image(gray, SPEC)[0]
    raw = x * STD[:, None, None] + MEAN[:, None, None]
    np.testing.assert_allclose(raw[0], raw[1], atol=1e-6)
    np.testing.assert_allclose(raw[0], gray / 255, atol=1e-6)


def test_one_channel_model_gets_luminance():
    spec = ImageInput(resolution=16, crop_pct=1.0, channels=1, mean=(0.5,), std=(0.5,))
    x = load_image(np.full((16, 16, 3), 255, np.uint8), spec)
    assert x.shape == (1, 1, 16, 16)
    np.testing.assert_allclose(x, 1.0)


def test_truncated_jpeg_names_the_file(tmp_path):
    good = tmp_path / "photo.jpg"
    Image.fromarray(_noise(64, 64)).save(good, quality=90)
    bad = tmp_path / "half photo.jpg"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(InvalidInputError, match=r"half photo\.jpg: cannot read the image .*truncated"):
        load_image(bad, SPEC)


def test_unreadable_and_missing_files_name_the_file(tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a picture")
    with pytest.raises(InvalidInputError, match=r"notes\.jpg: cannot read the image"):
        open_image(text)
    with pytest.raises(InvalidInputError, match=r"gone\.png: image file not found"):
        open_image(tmp_path / "gone.png")


def test_arrays_must_be_hwc_uint8():
    assert load_image(_noise(32, 32)[:, :, :1], SPEC).shape == (1, 3, 32, 32)
    with pytest.raises(InvalidInputError, match=r"HWC .* uint8"):
        load_image(np.zeros((32, 32, 3), np.float32), SPEC)
    with pytest.raises(InvalidInputError, match=r"HWC .* uint8"):
        load_image(np.zeros((3, 32, 32), np.uint8), SPEC)
    with pytest.raises(InvalidInputError, match="cannot read an image from int"):
        open_image(3)


def test_float_images_are_refused():
    with pytest.raises(InvalidInputError, match="32-bit float"):
        open_image(Image.new("F", (4, 4), 0.5))


def test_batch_stacks_and_names_the_bad_file(tmp_path):
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(_noise(36, 40, seed=i)).save(paths[-1])
    batch = load_image_batch(paths, SPEC)
    assert batch.shape == (3, 3, 32, 32)
    np.testing.assert_array_equal(batch[1], load_image(paths[1], SPEC)[0])
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(InvalidInputError, match=r"bad\.png"):
        load_image_batch([*paths, tmp_path / "bad.png"], SPEC)
    with pytest.raises(InvalidInputError, match="no images"):
        load_image_batch([], SPEC)


def test_spec_from_a_manifest_dict():
    d = json.loads(json.dumps(ImageInput(resolution=96, interpolation="bilinear").to_dict()))  # lists, as on disk
    assert as_image_input(d) == ImageInput(resolution=96, interpolation="bilinear")
    with pytest.raises(ModelFileError, match="lacks mean, std"):
        as_image_input({"resolution": 32, "crop_pct": 1.0, "interpolation": "bicubic"})
    with pytest.raises(ModelFileError, match="not an image spec"):
        as_image_input(AudioInput().to_dict())
    with pytest.raises(ConfigError, match=r"crop_pct must be in .*; interpolation must be one of .* got 'lanczos'"):
        as_image_input({**d, "interpolation": "lanczos", "crop_pct": 1.5})
