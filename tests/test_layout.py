"""The package layout: import layers (import-linter, contracts in pyproject.toml) and the imports inside functions.

docs/architecture.md draws the layers. A function-level import of edgeformer's own modules is allowed only where
it keeps an optional heavy dependency (torch, openvino, coremltools, tensorrt, onnx's authoring tools) out of a
light import; each one is listed here with its reason, so a new one is a decision, not an accident.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "edgeformer"
MAX_FUNCTION_LEVEL_IMPORTS = 20  # the restructure issue's bound


def function_level_own_imports() -> list[tuple[str, int, str]]:
    """(module path, line, imported module) for every import of edgeformer's own modules inside a function."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
        for fn in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.ImportFrom) and node.level > 0:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    found.append((rel, node.lineno, ".".join([*base, *([node.module] if node.module else [])])))
                elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("edgeformer"):
                    found.append((rel, node.lineno, node.module))
                elif isinstance(node, ast.Import):
                    found += [(rel, node.lineno, a.name) for a in node.names if a.name.startswith("edgeformer")]
    return found


def test_imports_of_own_modules_inside_functions_stay_few():
    found = function_level_own_imports()
    listing = "\n".join(f"{p}:{line}: {mod}" for p, line, mod in found)
    assert len(found) < MAX_FUNCTION_LEVEL_IMPORTS, f"{len(found)} function-level imports:\n{listing}"


def test_the_import_layers_hold():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    if not Path(exe).exists():
        pytest.fail("lint-imports is missing: install the test extra (pip install -c constraints.txt -e '.[test]')")
    out = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout


def test_the_device_side_imports_without_torch():
    code = (
        "import sys, edgeformer, edgeformer.runtimes, edgeformer.profiling, edgeformer.artifact, edgeformer.cli.app\n"
        "edgeformer.Session, edgeformer.load, edgeformer.profile\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'onnxscript', 'onnxslim', 'matplotlib',"
        " 'openvino', 'coremltools', 'tensorrt', 'safetensors'})\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_export_compile_and_bench_are_both_subpackage_and_function():
    import edgeformer
    import edgeformer.bench.report
    import edgeformer.compile.targets
    import edgeformer.export.formats

    for name, doc in (("export", "Export a zoo model"), ("compile", None), ("bench", None)):
        obj = getattr(edgeformer, name)
        assert callable(obj), name
        assert obj.__call__.__doc__ and (doc is None or doc in obj.__call__.__doc__)
    with pytest.raises(Exception, match="unknown export format 'tflite'"):
        edgeformer.export("shvit_s1", fmt="tflite", out="unused")
