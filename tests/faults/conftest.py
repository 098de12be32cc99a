"""The fault catalogue: one file per area, each test named after the fault it pins (docs/faults.md points here).

Faults are driven through the real ``edgeformer`` command in a child process where a user meets them there.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

FIXTURE = Path(__file__).parent.parent / "fixtures" / "tiny_image_artifact"  # input (batch, 3, 16, 16), 3 labels


@pytest.fixture
def tiny_artifact(tmp_path) -> Path:
    """A copy of the tiny image artifact (a test may damage or move it)."""
    dst = tmp_path / "tiny"
    shutil.copytree(FIXTURE, dst)
    return dst
