"""Checkpoint files are untrusted input: code-carrying pickles are refused, broken files are named for what they are."""

from __future__ import annotations

import pytest
import torch

from edgeformer.errors import ModelFileError, UnsafeInputError
from edgeformer.models.checkpoints import read_state_dict


class _OpensAFile:
    """Unpickling this would call ``open(path, "w")``: the stand-in for a checkpoint that runs code."""

    def __init__(self, path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_checkpoint_needing_globals_is_refused_listing_them_and_runs_nothing(tmp_path):
    marker = tmp_path / "written-by-the-pickle"
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(2)}, "hook": _OpensAFile(marker)}, path)
    with pytest.raises(UnsafeInputError, match=r"evil\.pth: refused.*io\.open.*state_dict") as e:
        read_state_dict(path)
    assert e.value.exit_code == 4
    assert not marker.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "file is empty"),
        (b"\x89PNG\r\n\x1a\n" + bytes(16), "is an image, not a checkpoint"),
        (b"\x08\x07\x12\x07pytorch" + bytes(16), "looks like an ONNX model, not a checkpoint"),
        (b"hello, not a checkpoint", "not a PyTorch or safetensors checkpoint"),
    ],
    ids=["empty", "png", "onnx", "text"],
)
def test_wrong_type_checkpoint_is_named_by_its_content(tmp_path, content, message):
    path = tmp_path / "weights.pth"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match=message) as e:
        read_state_dict(path)
    assert e.value.exit_code == 3


def test_truncated_and_missing_checkpoints_are_model_file_errors(tmp_path):
    whole = tmp_path / "whole.pth"
    torch.save({"w": torch.zeros(64)}, whole)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(ModelFileError, match=r"cut\.pth: truncated or corrupt checkpoint"):
        read_state_dict(cut)
    with pytest.raises(ModelFileError, match=r"gone\.pth: checkpoint not found"):
        read_state_dict(tmp_path / "gone.pth")
    cut_st = tmp_path / "cut.safetensors"
    cut_st.write_bytes(b"\x40\x00\x00\x00\x00\x00\x00\x00{" + bytes(8))  # header claims 64 bytes, 9 follow
    with pytest.raises(ModelFileError, match=r"corrupt or truncated safetensors"):
        read_state_dict(cut_st)
