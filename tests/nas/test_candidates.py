"""Slimming candidates (export -> quantize -> evaluate) as jobs: the same artifacts and scores from the one-at-a-time
local build and from Ray tasks on a local Ray instance (``ray.init(num_cpus=2)``), and a returned archive can
only land where it is told to."""

from __future__ import annotations

import hashlib
import io
import tarfile

import numpy as np
import onnx
import pytest

from edgeformer.agent import RayExecutor
from edgeformer.artifact import Artifact
from edgeformer.errors import ModelFileError
from edgeformer.models.reference import load_reference, read_reference_meta
from edgeformer.nas import SearchSpace
from edgeformer.nas.candidates import BuiltCandidate, CandidateJob, build_candidates, candidate_executor, top1, unpack
from edgeformer.nas.data import reference_data
from edgeformer.nas.evaluate import Evaluator
from edgeformer.nas.search import uniform


@pytest.fixture(scope="module")
def jobs():
    """The parent scored in fp32, two uniform children (int8, one scored): what one slim budget builds."""
    space = SearchSpace.of("digits_shvit")
    parent, _ = load_reference("digits_shvit")
    data = reference_data("digits_shvit")
    evaluate = Evaluator(parent, data)
    x, _ = data.train(0)
    test = (data.test[0][:256], data.test[1][:256])
    shared = {"zoo_model": space.zoo_model, "input_spec": read_reference_meta("digits_shvit").input}
    shared["example"] = data.val[0][:1].copy()
    return [
        CandidateJob(name="parent", module=parent, precision="fp32", backend="ort", test=test, **shared),
        *(
            CandidateJob(
                name=f"u{j}",
                module=evaluate.child(uniform(space, f)),
                precision="int8",
                backend="ort",
                calib=x[:32],
                test=test if j == 0 else None,
                **shared,
            )
            for j, f in enumerate((0.5, 0.75))
        ),
    ]


def graph_sha(path) -> str:
    """The model's bytes without the embedded manifest, which records when and how long its export ran."""
    model = onnx.load(Artifact.load(path).model_path)
    model.ClearField("metadata_props")
    return hashlib.sha256(model.SerializeToString()).hexdigest()


def fingerprint(built: list) -> list:
    return [(p.name, graph_sha(p), score) for p, score in built]


def test_ray_builds_the_same_candidates_as_the_local_build(jobs, tmp_path):
    ray = pytest.importorskip("ray")
    with candidate_executor() as ex:
        local = build_candidates(jobs, ex, tmp_path / "local")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        with RayExecutor() as ex:  # joins the instance started above, leaves it to us
            remote = build_candidates(jobs, ex, tmp_path / "ray")
    finally:
        ray.shutdown()
    assert fingerprint(remote) == fingerprint(local)
    names = [p.name for p, _ in local]
    assert names == ["parent", "u0", "u1"]
    (parent, parent_top1), (u0, u0_top1), (_, u1_top1) = local
    assert Artifact.load(parent).precision == "fp32" and Artifact.load(u0).precision == "int8"
    assert u1_top1 is None  # only timed: not scored
    # the score is the artifact's own top-1 on the test inputs, as ONNX Runtime runs it here
    assert parent_top1 == top1(parent, *jobs[0].test) and parent_top1 > 90
    assert u0_top1 == top1(u0, *jobs[1].test)


def test_a_failing_candidate_raises_its_own_error(jobs, tmp_path):
    bad = CandidateJob(**{**jobs[1].__dict__, "name": "nocalib", "calib": None})
    with candidate_executor() as ex, pytest.raises(ValueError, match=r"nocalib.*calibration"):
        build_candidates([bad], ex, tmp_path)


def archive(name: str, data: bytes = b"x", link: str | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        if link is not None:
            info.type, info.linkname = tarfile.SYMTYPE, link
            tar.addfile(info)
        else:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize(
    "member", [{"name": "../escaped.txt"}, {"name": "model.onnx", "link": "/etc/passwd"}], ids=["dotdot", "symlink"]
)
def test_an_archive_cannot_write_outside_its_folder(tmp_path, member):
    dest = tmp_path / "work" / "c0"
    with pytest.raises(ModelFileError, match="c0: its artifact came back unreadable"):
        unpack(BuiltCandidate("c0", archive(**member), None), dest)
    assert not (tmp_path / "work" / "escaped.txt").exists() and not dest.exists()
    assert list((tmp_path / "work").iterdir()) == []  # the half-unpacked folder is gone too


def test_an_absolute_member_lands_inside_the_folder(tmp_path):
    dest = unpack(BuiltCandidate("c2", archive("/abs/model.onnx", b"onnx"), None), tmp_path / "c2")
    assert (dest / "abs" / "model.onnx").read_bytes() == b"onnx"


def test_a_damaged_archive_is_an_artifact_error(tmp_path):
    with pytest.raises(ModelFileError, match="unreadable"):
        unpack(BuiltCandidate("c1", b"not a tar" + np.zeros(1024, np.uint8).tobytes(), None), tmp_path / "c1")
    assert not any(tmp_path.iterdir())
