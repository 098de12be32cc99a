"""The benchmark scripts' own logic (their timings are measured, never asserted)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(name, p50, cos, peer, status="ok"):
    return {"name": name, "p50_ms": p50, "parity_cosine": cos, "peer": peer, "status": status}


def test_backends_summary_compares_the_marked_row_with_both_kinds_of_best_peer():
    summarize = _load("backends").summarize
    rows = [
        _row("eager", 50.0, 1.0, True),
        _row("nncf", 10.0, 0.98, True),  # fastest peer, but below the bar
        _row("ov-fp32", 20.0, 0.99999, True),
        _row("ours-int8", 12.0, 0.9995, False),
        _row("ours-broken", 5.0, 0.3, False),  # fastest of all, never marked
        _row("skipped", None, None, False, "skipped"),
    ]
    s = summarize(rows, 0.999)
    assert s["marked"] == "ours-int8" and s["best_edgeformer"] == "ours-int8"
    assert s["best_peer_any"] == "nncf" and s["best_peer_meeting_bar"] == "ov-fp32"
    assert s["marked_vs_best_peer_any"] == pytest.approx(1.2)
    assert s["marked_vs_best_peer_meeting_bar"] == pytest.approx(0.6)


def test_backends_summary_when_a_peer_is_the_marked_row():
    s = _load("backends").summarize([_row("ov-fp32", 20.0, 1.0, True), _row("ours", 30.0, 0.9999, False)], 0.999)
    assert s["marked"] == "ov-fp32" and s["marked_vs_best_peer_meeting_bar"] == 1.0
    assert s["edgeformer_vs_best_peer_meeting_bar"] == 1.5
