"""What every atheris harness under ``fuzz/`` shares: instrumented imports, a scratch folder, and the runner.

A harness is one file ``fuzz/<name>.py`` with a ``test_one_input(data: bytes)`` that feeds the bytes to one
parser and lets only the *expected* outcomes pass (an :class:`~edgeformer.errors.EdgeformerError`, the class
the fault contract gives every bad input). Anything else that escapes, an unexpected exception type, a hang past
``-timeout`` or a native crash, is a finding: libFuzzer stops, prints the traceback and writes the input as
``crash-<sha1>`` (``timeout-``, ``oom-``).

Run one::

    nice -n 15 python fuzz/modelfile.py -max_total_time=300      # or -runs=N; any libFuzzer flag works
    python fuzz/modelfile.py crash-0123abcd                       # replay one input

With no corpus folder on the command line the harness reads its committed seeds (``fuzz/corpus/<name>/``) and
writes what it discovers to a fresh temporary folder, so a run never edits the committed corpus.
``tests/test_fuzz.py`` replays every seed through ``test_one_input`` directly and runs each harness for
``$EDGEFORMER_FUZZ_SECONDS`` in a subprocess.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import random
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

FUZZ_DIR = Path(__file__).resolve().parent
CORPUS_DIR = FUZZ_DIR / "corpus"


@contextlib.contextmanager
def instrumented(module_name: str, *packages: str) -> Iterator[None]:
    """Instrument ``edgeformer`` (and ``packages``) for coverage while the block imports them, but only when the
    harness runs as a script: imported by pytest to replay the corpus, the modules stay as they are."""
    if module_name != "__main__":
        yield
        return
    import atheris

    with atheris.instrument_imports(include=["edgeformer", *packages]):
        yield


_scratch: Path | None = None


def _temp_folder(kind: str, base: str | None = None) -> Path:
    """An owned temporary folder (``edgeformer.scratch``) under ``base``; those of dead runs are removed first.

    libFuzzer ends the process with C's ``exit()``, which skips Python's ``atexit``: each run clears what the
    runs before it left instead. Imported here, not at the top: ``edgeformer`` must first be imported by the
    harness under :func:`instrumented`, or its modules would not be instrumented.
    """
    from edgeformer.scratch import make_scratch_dir

    return make_scratch_dir(f"fuzz-{kind}", parent=base)


def scratch() -> Path:
    """One temporary folder per process (in memory where ``/dev/shm`` exists: harnesses write a file per input)."""
    global _scratch
    if _scratch is None:
        _scratch = _temp_folder("scratch", "/dev/shm" if os.access("/dev/shm", os.W_OK) else None)
        atexit.register(shutil.rmtree, _scratch, ignore_errors=True)  # a replay in pytest does end normally
    return _scratch


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# JSON values a mutation writes in place of a node: every type, the edges of each, and two that only raw text
# can hold (json.dumps cannot write a 5000-digit int, and would recurse on a deep nest)
_BIG_INT, _DEEP = "\x00big-int\x00", "\x00deep\x00"
_PALETTE = (
    None,
    True,
    False,
    0,
    -1,
    1,
    2**63,
    1.5,
    -0.0,
    1e308,
    float("nan"),
    float("inf"),
    "",
    "x",
    "..",
    "/etc/passwd",
    "a" * 300,
    [],
    {},
    [1, "a"],
    {"kind": "audio"},
    _BIG_INT,
    _DEEP,
)


def json_mutator(data: bytes, max_size: int, seed: int) -> bytes:
    """libFuzzer's byte mutations half the time; otherwise, when the input holds a JSON document after a
    prefix (a record name, the agent's request fields), one structural change to it: a node replaced by a value
    of another type, a key dropped or added, a value copied from elsewhere, a list wrapped or emptied. Byte
    flips alone almost never get a typed record past its first field."""
    import atheris

    rng = random.Random(seed)
    start = min((i for i in (data.find(b"{"), data.find(b"[")) if i >= 0), default=-1)
    if rng.random() < 0.5 or start < 0:
        return atheris.Mutate(data, max_size)
    try:
        doc = json.loads(data[start:])
    except (ValueError, RecursionError):
        return atheris.Mutate(data, max_size)
    nodes: list[tuple[object, object]] = []  # (container, key) of every value below the root

    def walk(v: object) -> None:
        items = v.items() if isinstance(v, dict) else enumerate(v) if isinstance(v, list) else ()
        for k, x in items:
            nodes.append((v, k))
            walk(x)

    walk(doc)
    if not nodes:
        doc = rng.choice(_PALETTE)
    else:
        parent, key = rng.choice(nodes)
        op = rng.randrange(5)
        if op == 0:
            parent[key] = rng.choice(_PALETTE)  # type: ignore[index]
        elif op == 1 and isinstance(parent, dict):
            del parent[key]
        elif op == 2 and isinstance(parent, dict):
            parent[rng.choice(["extra", "kind", "files", "schema_version", str(key) + "_"])] = rng.choice(_PALETTE)
        elif op == 3:
            other_parent, other_key = rng.choice(nodes)
            parent[key] = json.loads(json.dumps(other_parent[other_key]))  # type: ignore[index]
        else:
            parent[key] = [parent[key]]  # type: ignore[index]
    text = json.dumps(doc).replace(json.dumps(_BIG_INT), "1" * 5000).replace(json.dumps(_DEEP), "[" * 5000 + "]" * 5000)
    return (data[:start] + text.encode())[:max_size]


def main(name: str, test_one_input: Callable[[bytes], None], mutator: Callable[..., bytes] | None = None) -> None:
    """``python fuzz/<name>.py [libFuzzer flags] [corpus dirs or files]``: fuzz, or replay the files given.

    ``mutator``: a libFuzzer custom mutator (:func:`json_mutator` for JSON inputs). Defaults added unless given:
    ``-timeout=20`` (an input that takes longer is a hang), ``-rss_limit_mb=2048`` and, with no corpus named, a
    fresh output folder followed by the committed seeds.
    """
    import atheris

    args = list(sys.argv)
    flags = [a for a in args[1:] if a.startswith("-")]
    if not any(a.startswith("-timeout=") for a in flags):
        args.append("-timeout=20")
    if not any(a.startswith("-rss_limit_mb=") for a in flags):
        args.append("-rss_limit_mb=2048")
    if not [a for a in args[1:] if not a.startswith("-")]:
        args += [str(_temp_folder(f"corpus-{name}")), str(CORPUS_DIR / name)]
    atheris.Setup(args, test_one_input, **({"custom_mutator": mutator} if mutator else {}))
    atheris.Fuzz()
