"""``bench --device``: artifact rows timed on the agent, built and parity-checked here; PyTorch rows skipped;
what the device cannot run is asked of the device."""

from __future__ import annotations

from profiling.conftest import make_conv_model, write_artifact  # tests/ is on sys.path
from profiling.test_bench import FAST, TWIN_INPUTS, OnnxTwin

from edgeformer.agent import AgentClient
from edgeformer.bench import RowProducer, bench
from edgeformer.bench.rows import ROW_PRODUCERS, compiled

from .conftest import TOKEN


def test_bench_times_artifact_rows_on_the_agent_and_asks_it_what_it_runs(start_agent, tmp_path):
    agent = start_agent()
    shape = (2, 3, 32, 32)
    art = write_artifact(tmp_path / "onnx", shape)
    eager = next(p for p in ROW_PRODUCERS if p.backend == "eager")
    producers = [
        eager,
        RowProducer("onnx", "fp32", "ort", lambda ctx: ctx.profile_row(art, backend="ort"), peer=True),
        RowProducer("tensorrt", "fp32", "tensorrt", compiled("tensorrt", "fp32", lambda ctx: art)),
    ]
    report = bench(
        OnnxTwin(make_conv_model(shape)),
        example_inputs=TWIN_INPUTS,
        out=tmp_path / "bench",
        batch=2,
        threads=1,
        config=FAST,
        producers=producers,
        device=agent.url,
        token=TOKEN,
    )
    rows = {r.name: r for r in report.rows}
    assert rows["pytorch-fp32-eager"].status == "skipped"
    assert f"not on {agent.url}" in rows["pytorch-fp32-eager"].reason
    onnx = rows["onnx-fp32-ort"]
    assert onnx.status == "ok" and onnx.p50_ms > 0 and onnx.parity_cosine > 0.999  # parity checked here
    assert rows["tensorrt-fp32"].status == "skipped" and agent.url in rows["tensorrt-fp32"].reason
    info = AgentClient(agent.url, TOKEN).info()
    assert report.device["device_id"] == info.device.device_id
    # the one artifact row ran there, once per round, taking turns with its A/A twin
    assert info.jobs.done == 2 * FAST.rounds
    assert report.verdict is not None and report.verdict.aa.b == "onnx-fp32-ort (A/A)"
    assert onnx.timed_with == f"on {agent.url}: one profile job per round"
