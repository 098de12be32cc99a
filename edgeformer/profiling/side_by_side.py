"""Artifacts timed side by side, and a ranking that only marks a winner the figures support.

Used by ``edgeformer bench`` (one contender per table row) and ``edgeformer profile A B … --compare``.

* :func:`artifact_contender` opens an artifact as a :class:`~.interleave.Contender` with the same session settings
  for every row of one backend: ORT rows all get ``threads`` intra-op threads and spinning **off** — with several
  sessions open at once, one session's idle workers busy-waiting would steal the cores from the one being timed —
  and the row records it (:func:`session_settings`). OpenVINO rows are opened and closed around every round: its
  idle TBB workers stay alive between calls (the report says "reopened per round").
* :func:`rank` decides the ★. An **A/A check** comes first: the reference artifact opened twice, as two rows;
  their paired ratio must lie within ``MAX_AA_DEVIATION`` of 1, or the machine is too noisy for any ranking and no row
  is marked; its distance from 1 is the floor a ranked difference must clear. Then the fastest eligible row gets the ★
  only if it is faster than the runner-up *beyond the interval* of their paired ratio; otherwise every row within the
  noise of the fastest is tied, and the tie goes to the best fidelity (cosine, to 6 decimals), then the smallest file —
  and the verdict says so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from ..artifact import Artifact
from ..errors import ConfigError
from ..records import Record
from ..runtimes.base import SessionOptions
from ..runtimes.feeds import check_feeds
from ..runtimes.session import backend_for
from .interleave import Contender, InterleaveConfig, Interleaved, RatioEstimate, interleave
from .profile import build_feeds, open_session

AA_SUFFIX = " (A/A)"
# the same artifact twice further apart than this is a machine too noisy to rank on (under load: A/A 1.50 [0.72,
# 2.10]). Within it, the pair's distance from 1 is a floor every ranked difference must clear: on a quiet machine two
# sessions of one file came out 1.021 [1.009, 1.056] — real, but a property of the sessions, not of the model.
MAX_AA_DEVIATION = 0.03
# cosines closer than this are the same fidelity for a tie-break: 1e-6 is below what any check here resolves
FIDELITY_DECIMALS = 6


def session_options(backend: str, threads: int | None) -> SessionOptions:
    """The one session setting of every row of ``backend``: spinning off for ORT (see the module doc)."""
    extra = (("allow_spinning", False),) if backend == "ort" else ()
    return SessionOptions(threads=threads, extra=extra)


def session_settings(backend: str, threads: int | None, reopened: bool) -> str:
    """What a row was timed with, for its report line: ``threads=2 · spinning off · kept open``."""
    parts = [f"threads={threads if threads is not None else 'default'}"]
    if backend == "ort":
        parts.append("spinning off")
    parts.append("reopened per round" if reopened else "kept open")
    return " · ".join(parts)


def reopens(backend: str) -> bool:
    """Whether rows of ``backend`` are opened and closed around every round (idle worker threads of their own)."""
    return backend == "openvino"


def artifact_contender(
    name: str,
    artifact: Artifact,
    backend: str,
    *,
    threads: int | None,
    batch: int = 1,
    resolution: int | None = None,
    seed: int = 0,
) -> Contender:
    """``artifact`` on ``backend`` as a contender: seeded feeds shaped from its manifest, checked once."""
    feeds = build_feeds(artifact.manifest.inputs, batch=batch, resolution=resolution, seed=seed)
    options = session_options(backend, threads)

    def open_() -> tuple[Callable[[], object], Callable[[], None]]:
        session = open_session(artifact, backend=backend, options=options)
        try:
            checked = check_feeds(session.inputs, feeds)
        except BaseException:
            session.close()
            raise
        return (lambda: session.run(checked)), session.close

    return Contender(name, open_, reopen=reopens(backend))


ORT_FORMAT_FILES = ("model.ort", "model.required_operators.config")


def model_size_bytes(artifact: Artifact) -> int:
    """Bytes of what the row loads: the artifact's files, less the ``.ort`` copy an ORT-optimized artifact carries
    beside its ONNX (or only that copy, for the ``.ort`` row)."""
    if artifact.manifest.main_file == "model.ort":
        return artifact.model_path.stat().st_size
    extra = sum((artifact.path / f).stat().st_size for f in ORT_FORMAT_FILES if f in artifact.manifest.files)
    return artifact.size_bytes() - extra


def ort_format_artifact(artifact: Artifact) -> Artifact | None:
    """The ``model.ort`` beside an ORT-optimized artifact (``compile --set save_ort_format=true``), or None."""
    if not (artifact.path / "model.ort").is_file():
        return None
    return Artifact(path=artifact.path, manifest=dataclasses.replace(artifact.manifest, main_file="model.ort"))


@dataclass(frozen=True, kw_only=True)
class Entry:
    """A row as the ranking sees it: eligible for the ★ (ran and meets the fidelity bar), its fidelity and size."""

    name: str
    eligible: bool
    cosine: float | None = None
    size_mb: float | None = None


@dataclass(frozen=True, kw_only=True)
class Verdict(Record):
    """Which row earns the ★ and why; ``star`` is None when none does."""

    star: str | None
    how: Literal["faster", "tie", "alone", "noisy", "none"]
    message: str
    aa: RatioEstimate | None = None
    runner_up: RatioEstimate | None = None  # star (or fastest) / runner-up
    tied: tuple[str, ...] = ()

    @property
    def aa_ok(self) -> bool | None:
        return None if self.aa is None else aa_ok(self.aa)


def aa_ok(est: RatioEstimate) -> bool:
    """The A/A pair agrees: its ratio within ``MAX_AA_DEVIATION`` of 1."""
    return abs(est.ratio - 1) <= MAX_AA_DEVIATION


def rank(entries: Sequence[Entry], timing: Interleaved, aa: tuple[str, str] | None) -> Verdict:
    """The ★ of ``entries`` from their interleaved ``timing``; ``aa`` names the two rows of one artifact.

    The A/A pair's distance from 1 is the floor below which no difference counts: two sessions of one file
    differ by a percent or two on their own (memory placement), beyond what the rounds' interval shows.
    """
    aa_est = timing.ratio(*aa) if aa is not None else None
    if aa_est is not None and not aa_ok(aa_est):
        return Verdict(
            star=None,
            how="noisy",
            aa=aa_est,
            message=(
                f"A/A check failed: the same artifact timed as two rows came out at a ratio of {aa_est.describe()}, "
                f"more than {MAX_AA_DEVIATION:.0%} from 1: this machine is too noisy for a ranking, so no row is "
                "marked (rerun on a quieter machine, or with more --rounds)."
            ),
        )
    floor = abs(aa_est.ratio - 1) if aa_est is not None else 0.0
    ok = sorted((e for e in entries if e.eligible), key=lambda e: timing.row(e.name).p50_ms)
    if not ok:
        return Verdict(star=None, how="none", aa=aa_est, message="no row meets the fidelity bar.")
    fastest = ok[0]
    if len(ok) == 1:
        return Verdict(star=fastest.name, how="alone", aa=aa_est, message=f"{fastest.name} is the only eligible row.")

    def beats(est: RatioEstimate) -> bool:  # faster beyond the interval and beyond the A/A floor
        return est.high < 1.0 - floor

    runner = timing.ratio(fastest.name, ok[1].name)
    beyond = f"beyond the interval{f' and the A/A floor ({floor:.1%})' if floor else ''}"
    if beats(runner):
        return Verdict(
            star=fastest.name,
            how="faster",
            aa=aa_est,
            runner_up=runner,
            message=f"{fastest.name} is faster than {ok[1].name} {beyond}: ratio {runner.describe()}.",
        )
    tied = [e for e in ok if not beats(timing.ratio(fastest.name, e.name))]
    winner = max(tied, key=_tie_key)
    names = ", ".join(e.name for e in tied)
    return Verdict(
        star=winner.name,
        how="tie",
        aa=aa_est,
        runner_up=runner,
        tied=tuple(e.name for e in tied),
        message=(
            f"tie within the noise between {names} ({fastest.name} vs {ok[1].name}: {runner.describe()}, not "
            f"{beyond}); broken by fidelity, then size: {winner.name}."
        ),
    )


def _tie_key(e: Entry) -> tuple[float, float]:
    cosine = round(e.cosine, FIDELITY_DECIMALS) if e.cosine is not None else -1.0
    return cosine, -(e.size_mb if e.size_mb is not None else float("inf"))


@dataclass(frozen=True, kw_only=True)
class ComparedRow(Record):
    """One artifact of ``profile --compare``: its interleaved figures and its ratio to the first artifact."""

    name: str
    path: str
    backend: str
    p50_ms: float
    ci_low_ms: float
    ci_high_ms: float
    p90_ms: float
    startup_ms: float | None
    memory_mb: float | None
    size_mb: float
    timed_with: str
    vs_first: RatioEstimate | None = None


@dataclass(frozen=True, kw_only=True)
class Comparison(Record):
    """``edgeformer profile A B … --compare``: the rows, the verdict (A/A check included) and how they were timed."""

    rows: tuple[ComparedRow, ...]
    verdict: Verdict
    timing: str


def compare_artifacts(
    artifacts: Sequence[Artifact],
    *,
    backend: str | None,
    threads: int | None,
    batch: int = 1,
    resolution: int | None = None,
    seed: int = 0,
    config: InterleaveConfig = InterleaveConfig(),
    aa: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> Comparison:
    """Time ``artifacts`` side by side (the first one twice for the A/A check when ``aa``) and rank them.

    Every artifact gets the same session settings of its backend; there is no fidelity to rank by here, so
    a tie goes to the smaller file.
    """
    if len(artifacts) < 2:
        raise ConfigError("--compare needs at least two artifacts: the first and one or more to hold against it.")
    names = _unique_names([str(a.path) for a in artifacts])
    backends = [backend_for(a, backend) for a in artifacts]
    contenders = [
        artifact_contender(n, a, b, threads=threads, batch=batch, resolution=resolution, seed=seed)
        for n, a, b in zip(names, artifacts, backends, strict=True)
    ]
    pair = None
    if aa:
        pair = (names[0], names[0] + AA_SUFFIX)
        contenders.append(
            artifact_contender(
                pair[1], artifacts[0], backends[0], threads=threads, batch=batch, resolution=resolution, seed=seed
            )
        )
    result = interleave(contenders, config, progress=progress)
    rows = []
    for n, a, b in zip(names, artifacts, backends, strict=True):
        t = result.row(n)
        rows.append(
            ComparedRow(
                name=n,
                path=str(a.path),
                backend=b,
                p50_ms=t.p50_ms,
                ci_low_ms=t.ci_low_ms,
                ci_high_ms=t.ci_high_ms,
                p90_ms=t.p90_ms,
                startup_ms=t.startup_ms,
                memory_mb=t.memory_mb,
                size_mb=model_size_bytes(a) / 1e6,
                timed_with=session_settings(b, threads, t.reopened),
                vs_first=None if n == names[0] else result.ratio(n, names[0]),
            )
        )
    entries = [Entry(name=r.name, eligible=True, size_mb=r.size_mb) for r in rows]
    verdict = rank(entries, result, pair)
    how = (
        f"interleaved, {len(result.names)} rows × {len(result.round_medians)} rounds, order shuffled each round, "
        f"≥ {config.round_time_s:.2f} s per row per round; p50 = median of round medians, [95 % CI] by bootstrap"
    )
    return Comparison(rows=tuple(rows), verdict=verdict, timing=how)


def _unique_names(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n} #{seen[n]}")
    return out
