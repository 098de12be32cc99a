// WAV files read as edgeformer.data.audio.read_wav reads them, so a file gives the page the samples Python gets:
// PCM 8-bit (unsigned), 16/24/32-bit (signed) and IEEE float 32/64-bit, WAVE_FORMAT_EXTENSIBLE included,
// channels averaged to mono. The browser's decodeAudioData is not used for these: Chromium's decoder moves
// 16-bit samples by up to half a step, which shows in the logits.

const PCM = 1;
const FLOAT = 3;
const EXTENSIBLE = 0xfffe;

export function readWav(buffer) {
  const view = new DataView(buffer);
  const tag = (at) => String.fromCharCode(...new Uint8Array(buffer, at, 4));
  if (buffer.byteLength < 12 || tag(0) !== "RIFF" || tag(8) !== "WAVE") throw new Error("not a WAV file (no RIFF/WAVE header)");
  let pos = 12;
  let fmt = null;
  let data = null;
  while (pos + 8 <= buffer.byteLength && (!fmt || !data)) {
    const id = tag(pos);
    const size = view.getUint32(pos + 4, true);
    if (id === "fmt ") fmt = { at: pos + 8, size };
    else if (id === "data") data = { at: pos + 8, size: Math.min(size, buffer.byteLength - pos - 8) };
    pos += 8 + size + (size & 1);
  }
  if (!fmt || !data) throw new Error("truncated or corrupt WAV file (fmt or data chunk missing)");
  let format = view.getUint16(fmt.at, true);
  const channels = view.getUint16(fmt.at + 2, true);
  const sampleRate = view.getUint32(fmt.at + 4, true);
  const bits = view.getUint16(fmt.at + 14, true);
  if (format === EXTENSIBLE) format = view.getUint16(fmt.at + 24, true);
  const width = (bits + 7) >> 3;
  if (!channels || !width || !sampleRate) throw new Error("corrupt WAV header");
  const frames = Math.floor(data.size / (channels * width));
  const read = sampleReader(view, format, width);
  const mono = new Float32Array(frames);
  for (let i = 0; i < frames; i++) {
    let sum = 0;
    for (let c = 0; c < channels; c++) sum += read(data.at + (i * channels + c) * width);
    mono[i] = sum / channels;
  }
  return { sampleRate, samples: mono };
}

function sampleReader(view, format, width) {
  if (format === FLOAT && width === 4) return (at) => view.getFloat32(at, true);
  if (format === FLOAT && width === 8) return (at) => view.getFloat64(at, true);
  if (format !== PCM) throw new Error(`WAV encoding ${format} is not supported; convert it to 16-bit PCM`);
  if (width === 1) return (at) => (view.getUint8(at) - 128) / 128;
  if (width === 2) return (at) => view.getInt16(at, true) / 32768;
  if (width === 3) return (at) => (((view.getUint8(at + 2) << 24) | (view.getUint8(at + 1) << 16) | (view.getUint8(at) << 8)) >> 8) / 8388608;
  if (width === 4) return (at) => view.getInt32(at, true) / 2147483648;
  throw new Error(`${8 * width}-bit PCM is not supported; convert it to 16-bit PCM`);
}
