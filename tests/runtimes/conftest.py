"""Fixtures for the runtime tests: real artifacts around the tiny models of :mod:`.tiny_models`."""

from __future__ import annotations

import pytest

from edgeformer.artifact import Artifact
from edgeformer.inputs import ImageInput

from .tiny_models import COLOR_LABELS, color_model, write_artifact


@pytest.fixture
def color_artifact(tmp_path) -> Artifact:
    """The colour classifier with ImageInput(resolution=32) preprocessing and labels."""
    return write_artifact(
        tmp_path / "color art", color_model(), preprocessing=ImageInput(resolution=32), labels=COLOR_LABELS
    )
