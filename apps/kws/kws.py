"""Streaming keyword spotting from a wav file or the microphone, torch-free (numpy + onnxruntime via edgeformer.load).

Usage::

    python apps/kws/kws.py ARTIFACT --wav stream.wav           # a file, as fast as the model runs
    python apps/kws/kws.py ARTIFACT --mic --seconds 30          # the default microphone (sounddevice + PortAudio)

The rule, the same as the browser demo's (apps/web/kws.js):

- a window of the model's clip length (1 s) every ``hop`` seconds, once a full window has arrived;
- posteriors = softmax(logits), smoothed by the mean over the last ``smooth`` windows;
- a detection when the smoothed score of a keyword (a label not starting with ``_``) reaches ``threshold``,
  unless another detection fired less than ``refractory`` seconds of audio before, or this keyword fired last
  and its score has not fallen below ``threshold`` since (one word held across many windows fires once);
- its time is the end of the window that fired, in seconds of audio since the stream started (the word lies
  in the second before it).

The real-time factor is compute time over audio time: below 1, the spotter keeps up with a live stream.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

import edgeformer
from edgeformer.data.audio import check_sample_rate, read_wav
from edgeformer.errors import BackendUnavailableError, ConfigError, EdgeformerError
from edgeformer.inputs import AudioInput


@dataclass(frozen=True)
class StreamConfig:
    """The streaming rule's knobs (module docstring); the browser demo's defaults are the same."""

    hop_s: float = 0.25
    smooth: int = 3
    threshold: float = 0.6
    refractory_s: float = 1.0

    def check(self) -> None:
        if not self.hop_s > 0 or self.smooth < 1 or not 0 < self.threshold <= 1 or self.refractory_s < 0:
            raise ConfigError(
                f"invalid stream settings {self}: hop > 0, smooth >= 1, threshold in (0, 1], refractory >= 0."
            )


@dataclass(frozen=True)
class Event:
    """A detected keyword: its label, the end of the window that fired (s of audio) and its smoothed score."""

    label: str
    time_s: float
    score: float


class KeywordSpotter:
    """Feed audio chunks at the model's rate with :meth:`feed`; it returns the keywords detected in them.

    Example::

        spotter = KeywordSpotter(edgeformer.load("kws"))
        for chunk in chunks:            # float32 mono at 16 kHz, any length
            for event in spotter.feed(chunk):
                print(event.time_s, event.label)
    """

    def __init__(self, predictor: edgeformer.runtimes.Predictor, config: StreamConfig = StreamConfig()) -> None:
        spec = predictor.preprocessing
        if not isinstance(spec, AudioInput) or predictor.labels is None:
            raise ConfigError("keyword spotting needs an audio classifier with labels, e.g. keywords_audioformer.")
        config.check()
        self.predictor, self.config, self.spec = predictor, config, spec
        self.labels = predictor.labels
        self.window = spec.num_samples
        self.hop = max(1, round(config.hop_s * spec.sample_rate))
        self.keywords = np.array([i for i, label in enumerate(self.labels) if not label.startswith("_")])
        self.buffer = np.zeros(0, np.float32)
        self.received = 0  # samples since the stream started
        self.next_end = self.window
        self.history: deque[np.ndarray] = deque(maxlen=config.smooth)
        self.last_detection = -np.inf
        self.held: int | None = None  # the keyword that fired last, while its smoothed score stays above threshold
        self.windows = 0
        self.compute_s = 0.0

    def feed(self, chunk: np.ndarray) -> list[Event]:
        """Append ``chunk`` (mono float at the model's sample rate) and run every window it completes."""
        chunk = np.asarray(chunk, np.float32).reshape(-1)
        events = []
        offset = 0
        while offset < len(chunk):
            take = min(len(chunk) - offset, self.next_end - self.received)
            self.buffer = np.concatenate([self.buffer, chunk[offset : offset + take]])[-self.window :]
            offset += take
            self.received += take
            if self.received == self.next_end:
                event = self._window(self.buffer, self.received / self.spec.sample_rate)
                if event is not None:
                    events.append(event)
                self.next_end += self.hop
        return events

    def _window(self, samples: np.ndarray, end_s: float) -> Event | None:
        t0 = time.perf_counter()
        session, name = self.predictor.session, self.predictor.input.name
        logits = session.run({name: self.predictor.preprocess(samples)})[self.predictor.output.name][0]
        self.compute_s += time.perf_counter() - t0
        self.windows += 1
        z = logits.astype(np.float64)
        p = np.exp(z - z.max())
        self.history.append(p / p.sum())
        smoothed = np.mean(self.history, axis=0)
        threshold = self.config.threshold
        if self.held is not None and smoothed[self.held] < threshold:
            self.held = None  # the last keyword fell below the threshold: it may fire again
        best = self.keywords[np.argmax(smoothed[self.keywords])]
        rested = end_s - self.last_detection >= self.config.refractory_s
        if smoothed[best] >= threshold and best != self.held and rested:
            self.last_detection, self.held = end_s, best
            return Event(self.labels[best], round(end_s, 3), round(float(smoothed[best]), 4))
        return None

    @property
    def audio_s(self) -> float:
        return self.received / self.spec.sample_rate

    @property
    def real_time_factor(self) -> float:
        """Compute seconds per second of audio (below 1: faster than real time)."""
        return self.compute_s / self.audio_s if self.received else 0.0


def spot(
    predictor, chunks: Iterable[np.ndarray], config: StreamConfig = StreamConfig()
) -> tuple[list[Event], KeywordSpotter]:
    """Run a spotter over ``chunks``; returns every event and the spotter (for its figures)."""
    spotter = KeywordSpotter(predictor, config)
    events = [e for chunk in chunks for e in spotter.feed(chunk)]
    return events, spotter


def wav_chunks(path: str | Path, spec: AudioInput, chunk_s: float = 0.1) -> Iterator[np.ndarray]:
    """A wav file in chunks as a microphone would deliver them; shorter than one window: zero-padded to one."""
    wave, rate = read_wav(path)
    check_sample_rate(rate, spec, source=str(path))
    if len(wave) < spec.num_samples:
        wave = np.pad(wave, (0, spec.num_samples - len(wave)))
    step = max(1, round(chunk_s * spec.sample_rate))
    for i in range(0, len(wave), step):
        yield wave[i : i + step]


def mic_chunks(
    spec: AudioInput, seconds: float, chunk_s: float = 0.1, device: str | int | None = None
) -> Iterator[np.ndarray]:
    """The microphone at the model's rate, ``chunk_s`` at a time, for ``seconds`` (PortAudio resamples).

    Raises:
        BackendUnavailableError: sounddevice or PortAudio is missing, or there is no input device.
    """
    try:
        import sounddevice as sd
    except (ImportError, OSError) as e:  # OSError: the module is there but libportaudio is not
        raise BackendUnavailableError(
            f"the microphone needs sounddevice and PortAudio ({e}): pip install sounddevice; apt-get install "
            "libportaudio2."
        ) from e
    step = max(1, round(chunk_s * spec.sample_rate))
    try:
        stream = sd.InputStream(samplerate=spec.sample_rate, channels=1, dtype="float32", blocksize=step, device=device)
    except (sd.PortAudioError, ValueError) as e:
        raise BackendUnavailableError(f"no usable microphone ({e}); pass --wav FILE, or --device.") from e
    with stream:
        for _ in range(max(1, round(seconds / chunk_s))):
            data, _overflowed = stream.read(step)
            yield data[:, 0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("artifact", help="a keyword model artifact, e.g. from `edgeformer export keywords_audioformer`")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--wav", type=Path, help="a wav file at the model's sample rate")
    src.add_argument("--mic", action="store_true", help="the microphone (sounddevice)")
    ap.add_argument("--seconds", type=float, default=30.0, help="how long to listen to the microphone")
    ap.add_argument("--device", default=None, help="sounddevice input device (name or index)")
    ap.add_argument("--hop", type=float, default=StreamConfig.hop_s, help="seconds between windows")
    ap.add_argument("--smooth", type=int, default=StreamConfig.smooth, help="windows averaged")
    ap.add_argument("--threshold", type=float, default=StreamConfig.threshold, help="smoothed score to detect")
    ap.add_argument("--refractory", type=float, default=StreamConfig.refractory_s, help="seconds between detections")
    ap.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of lines")
    args = ap.parse_args(argv)
    try:
        predictor = edgeformer.load(args.artifact, threads=args.threads)
        config = StreamConfig(args.hop, args.smooth, args.threshold, args.refractory)
        spotter = KeywordSpotter(predictor, config)
        spec = spotter.spec
        device = int(args.device) if args.device is not None and args.device.isdigit() else args.device
        chunks = wav_chunks(args.wav, spec) if args.wav else mic_chunks(spec, args.seconds, device=device)
        events = []
        for chunk in chunks:
            for event in spotter.feed(chunk):
                events.append(event)
                if not args.json:
                    print(f"{event.time_s:8.2f} s  {event.label:<8} {event.score:.2f}", flush=True)
    except EdgeformerError as e:
        print(f"error ({type(e).__name__}): {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    summary = {
        "events": [asdict(e) for e in events],
        "audio_s": round(spotter.audio_s, 3),
        "windows": spotter.windows,
        "real_time_factor": round(spotter.real_time_factor, 4),
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"{len(events)} keyword(s) in {summary['audio_s']:.1f} s of audio, {spotter.windows} windows, "
            f"real-time factor {summary['real_time_factor']:.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
