"""The same artifact in the browser (onnxruntime-web, WebAssembly, 1 and 2 threads) vs Python onnxruntime (1 and
2 threads), fp32 and INT8, p50 side by side.

The browser is Debian's Chromium, headless, driven by Playwright; the page is the demo (apps/web) served by
``edgeformer app web``'s server with the isolation headers, so WebAssembly threads are on. Every cell times the
model alone (no preprocessing) on the same input, ``--warmup`` untimed calls first, then ``--runs`` timed ones;
cells take turns over ``--rounds`` passes so a change in machine load hits all of them alike, and the p50 is
over every timed run of the cell. Python onnxruntime runs with spinning off (``allow_spinning=False``), as the
README advises on shared CPUs. The last columns compare the browser's logits with Python's on that input.

Usage::

    npm ci --prefix apps/web
    python benchmarks/browser.py --runs 100 --json browser.json

Models: the trained reference models (``digits_shvit``, ``keywords_audioformer``), exported and quantized
(``edgeformer.quantize`` with its defaults, calibrated on ``edgeformer samples``) into ``--work``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

import edgeformer
from edgeformer.data.samples import write_samples
from edgeformer.manifest import tool_versions
from edgeformer.runtimes import SessionOptions
from edgeformer.webapp import make_server

REPO = Path(__file__).resolve().parents[1]
CALIB = {"digits_shvit": "digits", "keywords_audioformer": "keywords"}
THREADS = (1, 2)


def build(models: list[str], work: Path) -> list[tuple[str, str, Path]]:
    """(model, precision, artifact) for fp32 and INT8 of each model, built once into ``work``."""
    samples = work / "samples"
    if not (samples / "samples.json").is_file():
        write_samples(samples, overwrite=True)
    out = []
    for name in models:
        fp32, int8 = work / name, work / f"{name}-int8"
        if not (fp32 / "artifact.json").is_file():
            edgeformer.export(name, out=fp32)
        if not (int8 / "artifact.json").is_file():
            edgeformer.quantize(fp32, edgeformer.QuantConfig(), calib=samples / CALIB[name], out=int8)
        out += [(name, "fp32", fp32), (name, "int8", int8)]
    return out


def bench_input(artifact: Path) -> np.ndarray:
    """The input the page's benchmark() builds: sin(i) over the flat tensor, batch 1."""
    m = edgeformer.Artifact.load(artifact).manifest
    shape = [1, *m.inputs[0].shape[1:]]
    return np.sin(np.arange(int(np.prod(shape)), dtype=np.float64)).astype(np.float32).reshape(shape)


def python_cell(artifact: Path, threads: int, x: np.ndarray, warmup: int, runs: int) -> tuple[list[float], np.ndarray]:
    opts = SessionOptions(threads=threads, extra=(("allow_spinning", False),))
    with edgeformer.Session(artifact, options=opts) as s:
        name = s.inputs[0].name
        for _ in range(warmup):
            y = s.run({name: x})
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            y = s.run({name: x})
            times.append((time.perf_counter() - t0) * 1e3)
    return times, next(iter(y.values()))[0]


def browser_cell(browser, url: str, index: int, threads: int, x: np.ndarray, warmup: int, runs: int):
    page = browser.new_page()
    try:
        page.goto(f"{url}?model={index}&backend=wasm&threads={threads}")
        page.wait_for_function("window.edgeformer && window.edgeformer.status !== 'loading'", timeout=120_000)
        info = page.evaluate("[window.edgeformer.status, window.edgeformer.error, window.edgeformer.info]")
        if info[0] != "ready":
            raise RuntimeError(f"the page did not load model {index}: {info[1]}")
        if info[2]["threads"] != threads:
            raise RuntimeError(f"asked for {threads} threads, the page runs {info[2]['threads']}")
        times = page.evaluate("([n, w]) => window.edgeformer.benchmark(n, w).then(r => r.times)", [runs, warmup])
        logits = np.asarray(page.evaluate("(x) => window.edgeformer.run(x)", x.reshape(-1).tolist()))
    finally:
        page.close()
    return times, logits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=list(CALIB), choices=list(CALIB))
    ap.add_argument("--runs", type=int, default=100, help="timed runs per cell and round")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path("bench-browser"), help="where the artifacts are built")
    ap.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    console = Console(width=120)
    artifacts = build(args.models, args.work)
    server = make_server([a for _, _, a in artifacts], port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    cells: dict[tuple[int, str, int], list[float]] = {}
    outputs: dict[tuple[int, str, int], np.ndarray] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium)
        chromium_version = browser.version
        for _ in range(args.rounds):
            for i, (_, _, art) in enumerate(artifacts):
                x = bench_input(art)
                for t in THREADS:
                    times, y = python_cell(art, t, x, args.warmup, args.runs)
                    cells.setdefault((i, "python", t), []).extend(times)
                    outputs[(i, "python", t)] = y
                    times, y = browser_cell(browser, server.url, i, t, x, args.warmup, args.runs)
                    cells.setdefault((i, "browser", t), []).extend(times)
                    outputs[(i, "browser", t)] = y
        browser.close()
    server.shutdown()

    table = Table(title=f"p50 latency (ms), {os.cpu_count()} cores; browser = Chromium {chromium_version}, wasm")
    for col in ("model", "precision", "browser 1t", "browser 2t", "python 1t", "python 2t", "cosine", "top-1"):
        table.add_column(col, justify="left" if col in ("model", "precision") else "right")
    rows: list[dict[str, Any]] = []
    for i, (name, precision, art) in enumerate(artifacts):
        p50 = {
            f"{where}_{t}t": statistics.median(cells[(i, where, t)]) for where in ("browser", "python") for t in THREADS
        }
        a, b = outputs[(i, "browser", 2)].astype(np.float64), outputs[(i, "python", 1)].astype(np.float64)
        cosine = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
        top1 = bool(np.argmax(a) == np.argmax(b))
        rows.append(
            {
                "model": name,
                "precision": precision,
                "artifact": str(art),
                "p50_ms": p50,
                "cosine": cosine,
                "max_abs": float(np.abs(a - b).max()),
                "top1_agree": top1,
                "runs": len(cells[(i, "python", 1)]),
            }
        )
        table.add_row(
            name,
            precision,
            *(f"{p50[k]:.2f}" for k in ("browser_1t", "browser_2t", "python_1t", "python_2t")),
            f"{cosine:.6f}",
            "yes" if top1 else "NO",
        )
    console.print(table)
    console.print(
        "cosine / top-1: the browser's logits (2 threads) vs Python onnxruntime's (1 thread) on the same input"
    )
    if args.json:
        web = json.loads((REPO / "apps/web/node_modules/onnxruntime-web/package.json").read_text())["version"]
        meta = {
            "chromium": chromium_version,
            "onnxruntime_web": web,
            "onnxruntime": tool_versions(["onnxruntime"]).get("onnxruntime"),
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "loadavg": os.getloadavg(),
            "runs_per_cell": args.runs * args.rounds,
            "warmup": args.warmup,
            "git": subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO
            ).stdout.strip(),
        }
        args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
