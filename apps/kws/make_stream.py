"""Write a test stream: espeak-ng words placed in noise at known times, and the truth beside it.

Usage::

    python apps/kws/make_stream.py stream.wav --words 20 --seed 0     # also writes stream.json (the truth)

Words are spoken by espeak-ng (``apt-get install espeak-ng``) with the voices, speeds and pitches held out from
the keyword model's training (``edgeformer.data.reference``), so the stream tests the model on voices it never
heard. Keywords alternate with ``_unknown_`` words (distractors a spotter must not report) every ``gap`` seconds
(with a random jitter), over coloured noise at ``snr_db`` against the speech; 16 kHz 16-bit PCM. The same
arguments always write the same samples on one espeak-ng version.

Scoring (:func:`score`): a detection matches a true keyword with its label when it fires between the word's
start and one window after its end (the window that fired holds the word); each word matches at most once.
Precision = matched detections / detections, recall = matched keywords / keywords.
"""

from __future__ import annotations

import argparse
import json
import wave
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgeformer.data.reference import (
    HELDOUT_ACCENTS,
    HELDOUT_PITCHES,
    HELDOUT_SPEEDS,
    HELDOUT_TIMBRES,
    KEYWORDS,
    TRAIN_ACCENTS,
    TRAIN_TIMBRES,
    UNKNOWN_WORDS,
    Utterance,
    _voice,
    mulaw_decode,
    synthesize_all,
)

SAMPLE_RATE = 16000
VOICES = {
    "heldout": [
        _voice(a, t)
        for a in TRAIN_ACCENTS + HELDOUT_ACCENTS
        for t in TRAIN_TIMBRES + HELDOUT_TIMBRES
        if a in HELDOUT_ACCENTS or t in HELDOUT_TIMBRES
    ],
    "train": [_voice(a, t) for a in TRAIN_ACCENTS for t in TRAIN_TIMBRES],
}


@dataclass(frozen=True)
class Word:
    """One spoken word in the stream: its text, label (the word, or ``_unknown_``) and where it is (s)."""

    text: str
    label: str
    start_s: float
    end_s: float
    voice: str


def make_stream(
    words: int = 20,
    *,
    seed: int = 0,
    gap_s: float = 2.0,
    snr_db: float = 20.0,
    unknown_every: int = 4,
    voices: str = "heldout",
    keywords: tuple[str, ...] = KEYWORDS,
) -> tuple[np.ndarray, list[Word]]:
    """A float32 waveform at 16 kHz and the words in it; every ``unknown_every``-th word is a distractor.

    ``voices="heldout"``: accents or timbres the keyword model never heard in training; ``"train"``: the voices
    it was trained on. Speeds and pitches are the held-out ones either way, and the renderings, placements
    and noise are new.
    """
    if voices not in VOICES:
        raise ValueError(f"voices must be one of {', '.join(VOICES)}, got {voices!r}")
    rng = np.random.default_rng(seed)
    pool = VOICES[voices]
    distractor = [bool(unknown_every) and (i + 1) % unknown_every == 0 for i in range(words)]
    texts = [str(rng.choice(UNKNOWN_WORDS)) if d else keywords[i % len(keywords)] for i, d in enumerate(distractor)]
    plan = [
        Utterance(t, str(rng.choice(pool)), int(rng.choice(HELDOUT_SPEEDS)), int(rng.choice(HELDOUT_PITCHES)))
        for t in texts
    ]
    clips = [mulaw_decode(c) for c in synthesize_all(plan)]
    starts = [0.8 + i * gap_s + rng.uniform(-0.2, 0.2) for i in range(words)]
    n = int((starts[-1] + gap_s) * SAMPLE_RATE)
    speech = np.zeros(n)
    truth = []
    for utt, clip, start in zip(plan, clips, starts, strict=True):
        clip = clip[: int(1.2 * SAMPLE_RATE)] * rng.uniform(0.5, 1.0)
        i = int(start * SAMPLE_RATE)
        speech[i : i + len(clip)] += clip
        label = utt.word if utt.word in keywords else "_unknown_"
        truth.append(Word(utt.word, label, round(start, 3), round(start + len(clip) / SAMPLE_RATE, 3), utt.voice))
    active = np.concatenate([c[np.abs(c) > 0.02] for c in clips])
    noise = np.fft.irfft(np.fft.rfft(rng.standard_normal(n)) / np.maximum(np.arange(n // 2 + 1), 1) ** 0.5, n)  # pink
    noise *= np.sqrt(np.mean(active**2)) * 10 ** (-snr_db / 20) / np.sqrt(np.mean(noise**2))
    x = speech + noise
    return (0.5 * x / np.abs(x).max()).astype(np.float32), truth


def write_wav(path: str | Path, x: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """16-bit PCM mono."""
    pcm = np.clip(np.rint(x * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())


def score(events, truth: list[Word], window_s: float = 1.0) -> dict[str, float]:
    """Precision and recall of ``events`` (``label``, ``time_s``) against the keywords in ``truth``."""
    keywords = [w for w in truth if not w.label.startswith("_")]
    used: set[int] = set()
    matched = 0
    for e in events:
        for i, w in enumerate(keywords):
            if i not in used and w.label == e.label and w.start_s <= e.time_s <= w.end_s + window_s:
                used.add(i)
                matched += 1
                break
    return {
        "precision": matched / len(events) if events else 0.0,
        "recall": len(used) / len(keywords) if keywords else 0.0,
        "detections": len(events),
        "keywords": len(keywords),
        "matched": matched,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="the wav to write; the truth goes beside it as .json")
    ap.add_argument("--words", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gap", type=float, default=2.0, help="seconds between word starts")
    ap.add_argument("--snr", type=float, default=20.0, help="speech-to-noise ratio, dB")
    args = ap.parse_args(argv)
    x, truth = make_stream(args.words, seed=args.seed, gap_s=args.gap, snr_db=args.snr)
    write_wav(args.out, x)
    args.out.with_suffix(".json").write_text(json.dumps([asdict(w) for w in truth], indent=1))
    print(f"{args.out}: {len(x) / SAMPLE_RATE:.1f} s, {len(truth)} words; truth in {args.out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
