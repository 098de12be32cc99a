"""Real agents for the tests: ``edgeformer agent serve`` as a subprocess on loopback, and tiny real ONNX artifacts.

Nothing is mocked: an agent is the CLI a user starts (its own process, a free port, a store folder), models are
ONNX graphs built with ``onnx.helper`` and written by the real :class:`ArtifactWriter`.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeformer.artifact import Artifact, ArtifactWriter, Manifest, TensorSpec
from edgeformer.profiling import ProfileConfig

TOKEN = "test-token-0123456789abcdef"
FAST = ProfileConfig(warmup=1, runs=5)  # a job of a few ms: the process start-up is most of it
_LISTENING = re.compile(r"listening on (agent://\S+)")


class AgentProcess:
    """One ``edgeformer agent serve`` child: its address, store, log, and ways to end it."""

    def __init__(self, store: Path, log: Path, args: tuple[str, ...], env: dict[str, str]) -> None:
        self.store, self.log, self.args, self.env = store, log, args, env
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self, timeout: float = 60) -> AgentProcess:
        seen = self.log.stat().st_size if self.log.exists() else 0  # a restart appends: read past the old lines
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "edgeformer.cli.app", "agent", "serve", "--store", str(self.store), *self.args],
                stdout=log,
                stderr=log,
                env=self.env,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = _LISTENING.findall(self.log.read_bytes()[seen:].decode("utf-8", errors="replace"))
            if found:
                self.url = found[-1]
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"the agent exited {self.proc.returncode}:\n{self.log.read_text()}")
            time.sleep(0.05)
        raise RuntimeError(f"the agent did not start in {timeout} s:\n{self.log.read_text()}")

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def restart(self) -> AgentProcess:
        """Start again on the same port and store (a restart after a crash)."""
        self.kill()
        args = list(self.args)
        if "--port" in args:
            args[args.index("--port") + 1] = str(self.port)
        else:
            args += ["--port", str(self.port)]
        self.args = tuple(args)
        return self.start()


class Agents:
    """Agents started for a test or a module; :meth:`close` ends them all (SIGTERM, then SIGKILL)."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._tmp = tmp_path_factory
        self.started: list[AgentProcess] = []

    def start(self, *args: str, token: str | None = TOKEN, store: Path | None = None) -> AgentProcess:
        root = self._tmp.mktemp("agent")
        env = {k: v for k, v in os.environ.items() if k != "EDGEFORMER_AGENT_TOKEN"}
        env |= {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        if token is not None:
            env["EDGEFORMER_AGENT_TOKEN"] = token
        if "--port" not in args:
            args = (*args, "--port", "0")
        agent = AgentProcess(store or root / "store", root / "agent.log", args, env)
        self.started.append(agent)
        return agent.start()

    def close(self) -> None:
        for agent in self.started:
            agent.kill(signal.SIGTERM)
            agent.kill()


@pytest.fixture
def start_agent(tmp_path_factory):
    """``start_agent(*args, token=TOKEN)``: a running agent, ended after the test."""
    agents = Agents(tmp_path_factory)
    yield agents.start
    agents.close()


def make_model(seed: int = 0, width: int = 16, layers: int = 2, feature_dim: str | None = None) -> onnx.ModelProto:
    """MatMul -> Relu blocks on a (batch, width) input: a tiny real model whose bytes differ with ``seed``
    (``feature_dim``: a symbolic name for the width, which profiling cannot fill in)."""
    rng = np.random.default_rng(seed)
    nodes, inits, x = [], [], "x"
    for i in range(layers):
        w = numpy_helper.from_array((rng.standard_normal((width, width)) * 0.1).astype(np.float32), f"w{i}")
        inits.append(w)
        nodes += [helper.make_node("MatMul", [x, f"w{i}"], [f"m{i}"]), helper.make_node("Relu", [f"m{i}"], [f"r{i}"])]
        x = f"r{i}"
    nodes.append(helper.make_node("Identity", [x], ["y"]))
    graph = helper.make_graph(
        nodes,
        "tiny_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", feature_dim or width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", feature_dim or width])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def make_spin_model() -> onnx.ModelProto:
    """A Loop whose trip count is 2**62 and whose condition stays true: onnxruntime runs it until killed."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Identity", ["v_in"], ["v_out"])],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_in", TensorProto.FLOAT, ["batch", 4]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_out", TensorProto.FLOAT, ["batch", 4]),
        ],
    )
    inits = [numpy_helper.from_array(np.array(2**62, np.int64), "M"), numpy_helper.from_array(np.array(True), "c")]
    graph = helper.make_graph(
        [helper.make_node("Loop", ["M", "c", "x"], ["y"], body=body)],
        "spin",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def write_artifact(dest: Path, model: onnx.ModelProto, name: str = "tiny_mlp") -> Artifact:
    """An artifact folder around ``model``, written by the real writer (its manifest lists every file's sha256)."""
    inputs = tuple(
        TensorSpec(
            name=v.name, shape=tuple(d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim), dtype="float32"
        )
        for v in model.graph.input
    )
    outputs = tuple(TensorSpec(name=v.name, shape=("batch", 4), dtype="float32") for v in model.graph.output)
    with ArtifactWriter(dest, overwrite=True) as w:
        onnx.save(model, w.dir / "model.onnx")
        return w.commit(
            Manifest(
                format="onnx", precision="fp32", model_name=name, main_file="model.onnx", inputs=inputs, outputs=outputs
            )
        )


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> Artifact:
    return write_artifact(tmp_path_factory.mktemp("tiny") / "tiny", make_model(0))


@pytest.fixture(scope="session")
def spin(tmp_path_factory) -> Artifact:
    return write_artifact(tmp_path_factory.mktemp("spin") / "spin", make_spin_model(), name="spin")


def store_files(store: Path) -> dict[str, list[str]]:
    """What an agent's store folder holds, by sub-folder (blobs, tmp, jobs)."""
    return {sub: sorted(p.name for p in (store / sub).iterdir()) for sub in ("blobs", "tmp", "jobs")}
