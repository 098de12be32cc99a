"""The bench table on a 120-column terminal, and rows that cannot pay off on this hardware."""

from __future__ import annotations

import pytest
from rich.console import Console

from edgeformer.bench import ROW_PRODUCERS, BenchConfig, BenchReport, BenchRow
from edgeformer.cli.bench import TABLE_WIDTH, bench_table
from edgeformer.profiling import DeviceCard, device_card, fp16_arithmetic, fp16_pays_off, precision_unavailable

LONG = (
    "BackendUnavailableError: TensorRT needs an NVIDIA GPU with a CUDA driver; none found (no /dev/nvidia0, "
    "nvidia-smi missing, libcuda not loadable)"
)


def _row(producer, status="ok", reason="", **figures) -> BenchRow:
    return BenchRow(
        name=producer.name,
        format=producer.format,
        precision=producer.precision,
        backend=producer.backend,
        status=status,
        reason=reason,
        peer=producer.peer,
        versions={"onnxruntime": "1.31.1", "openvino": "2026.4.1"},
        **figures,
    )


def test_the_table_fits_120_columns_with_one_line_per_row():
    figures = dict(
        size_mb=123.4,
        parity_cosine=0.999767,
        top1_agreement=1.0,
        p50_ms=12345.67,
        p90_ms=23456.78,
        fps=81234.5,
    )
    rows = [
        _row(
            p,
            *(("skipped", LONG) if p.format in ("tensorrt", "coreml") else ("ok", "a note of 22 chars.xyz; detail")),
            # unstable rows get a longer note (a footnote); stable non-peer ones keep theirs in the table
            **({} if p.format in ("tensorrt", "coreml") else {**figures, "stable": p.precision == "fp32"}),
        )
        for p in ROW_PRODUCERS
    ]
    report = BenchReport(
        model="efficientformer_l1",
        rows=tuple(rows),
        device={"cpu_model": "X" * 200},
        batch=1,
        threads=2,
        resolution=None,
        config=BenchConfig(),
        out="o",
    )
    table, footnotes = bench_table(report)
    console = Console(width=TABLE_WIDTH, record=True, color_system=None)
    console.print(table)
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= TABLE_WIDTH
    for row in rows:  # every row's name on exactly one line, whole: no wrapped or cut cells
        assert sum(f" {row.name} " in f" {line} " for line in lines) == 1, row.name
    # the long reason went to one shared footnote; the tools to the last line
    # the longest note that stays in the table
    assert any(line.rstrip().endswith(" a note of 22 chars.xyz") for line in lines)
    assert footnotes.count(LONG) == 1 and sum(f"see [{footnotes.index(LONG) + 1}]" in line for line in lines) == 6
    assert footnotes[-1] == "tools: onnxruntime 1.31.1 · openvino 2026.4.1"


def _card(*isa: str) -> DeviceCard:
    here = device_card()
    return DeviceCard(
        **{
            **{
                f: getattr(here, f)
                for f in (
                    "cpu_model",
                    "machine",
                    "physical_cores",
                    "logical_cores",
                    "usable_cpus",
                    "os",
                    "kernel",
                    "python",
                    "backend",
                    "runtime",
                )
            },
            "isa": isa,
        }
    )


@pytest.mark.parametrize(
    ("isa", "pays"),
    [(("avx2", "fma", "f16c"), False), (("avx512f", "avx512_fp16"), True), (("neon", "asimdhp"), True), ((), False)],
)
def test_fp16_arithmetic_is_read_from_the_isa(isa, pays):
    assert fp16_arithmetic(_card(*isa)) is pays


def test_the_fp16_row_is_skipped_with_the_reason_where_it_cannot_pay_off():
    reason = fp16_pays_off()
    assert (reason is None) is fp16_arithmetic()  # this machine's own answer, whichever it is
    if reason is not None:
        assert "no FP16 arithmetic" in reason
    # the one question bench's compiled rows and `edgeformer doctor` both ask
    assert precision_unavailable("ort", "fp16") == reason
    assert precision_unavailable("ort", "fp32") is None and precision_unavailable("tensorrt", "fp16") is None
