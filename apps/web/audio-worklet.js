// Runs on the audio thread: collects the microphone's 128-sample render quanta (mono: the channels averaged)
// and posts them to the page in chunks of `chunk` samples, at the AudioContext's rate (the model's).
class Capture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.chunk = new Float32Array(options.processorOptions.chunk);
    this.filled = 0;
  }

  process(inputs) {
    const channels = inputs[0];
    if (channels && channels.length) {
      const n = channels[0].length;
      for (let i = 0; i < n; i++) {
        let v = 0;
        for (const ch of channels) v += ch[i];
        this.chunk[this.filled++] = v / channels.length;
        if (this.filled === this.chunk.length) {
          this.port.postMessage(this.chunk.slice());
          this.filled = 0;
        }
      }
    }
    return true;
  }
}

registerProcessor("edgeformer-capture", Capture);
