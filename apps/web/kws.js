// Streaming keyword spotting, the same rule as apps/kws/kws.py (its README states it once for both):
//   - a window of the model's clip length (1 s) every `hop` samples, once a full window has arrived;
//   - posteriors = softmax(logits), smoothed by the mean over the last `smooth` windows;
//   - a detection when the smoothed score of a keyword (a label not starting with "_") reaches `threshold`,
//     unless another detection fired less than `refractory` seconds of audio before, or this keyword fired last
//     and its score has not fallen below `threshold` since (one word held across many windows fires once);
//   - its time is the end of the window that fired, in seconds of audio since the stream started.

export const DEFAULTS = { hopSeconds: 0.25, smooth: 3, threshold: 0.6, refractorySeconds: 1.0 };

export function softmax(logits) {
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  const p = Array.from(logits, (v) => Math.exp(v - max));
  const sum = p.reduce((a, b) => a + b, 0);
  return p.map((v) => v / sum);
}

export class KeywordStream {
  constructor({ labels, sampleRate, windowSamples, hopSeconds, smooth, threshold, refractorySeconds }) {
    this.labels = labels;
    this.sampleRate = sampleRate;
    this.window = windowSamples;
    this.hop = Math.round((hopSeconds ?? DEFAULTS.hopSeconds) * sampleRate);
    this.smooth = smooth ?? DEFAULTS.smooth;
    this.threshold = threshold ?? DEFAULTS.threshold;
    this.refractory = refractorySeconds ?? DEFAULTS.refractorySeconds;
    this.buffer = new Float32Array(0); // the newest samples, at most one window
    this.received = 0; // samples since the stream started
    this.nextEnd = this.window; // sample index at which the next window ends
    this.history = [];
    this.lastDetection = -Infinity;
    this.held = null; // the keyword that fired last, while its smoothed score stays above threshold
    this.keywords = labels.map((l, i) => [l, i]).filter(([l]) => !l.startsWith("_"));
  }

  // Append samples; returns the windows now complete, each {samples: Float32Array, endSeconds}.
  push(chunk) {
    const windows = [];
    let offset = 0;
    while (offset < chunk.length) {
      const take = Math.min(chunk.length - offset, this.nextEnd - this.received);
      this._append(chunk.subarray(offset, offset + take));
      offset += take;
      this.received += take;
      if (this.received === this.nextEnd) {
        windows.push({ samples: this.buffer.slice(), endSeconds: this.received / this.sampleRate });
        this.nextEnd += this.hop;
      }
    }
    return windows;
  }

  _append(samples) {
    const n = Math.min(this.window, this.buffer.length + samples.length);
    const next = new Float32Array(n);
    const keep = n - samples.length;
    if (keep > 0) next.set(this.buffer.subarray(this.buffer.length - keep), 0);
    next.set(samples.subarray(Math.max(0, samples.length - n)), Math.max(0, keep));
    this.buffer = next;
  }

  // Posteriors of one window in; returns {smoothed, detection|null}.
  observe(probs, endSeconds) {
    this.history.push(probs);
    if (this.history.length > this.smooth) this.history.shift();
    const smoothed = probs.map((_, i) => this.history.reduce((a, p) => a + p[i], 0) / this.history.length);
    if (this.held !== null && smoothed[this.held] < this.threshold) this.held = null; // it may fire again
    let best = null;
    for (const [label, i] of this.keywords) if (!best || smoothed[i] > best.score) best = { label, index: i, score: smoothed[i] };
    let detection = null;
    if (best && best.score >= this.threshold && best.index !== this.held && endSeconds - this.lastDetection >= this.refractory) {
      this.lastDetection = endSeconds;
      this.held = best.index;
      detection = { label: best.label, index: best.index, score: best.score, timeSeconds: endSeconds };
    }
    return { smoothed, detection };
  }
}
