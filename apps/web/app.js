// edgeformer's browser demo: one artifact at a time on onnxruntime-web, preprocessed from its manifest.
//
// URL parameters: model (index in /api/models.json), backend (auto | wasm | webgpu), threads (auto | N),
// topk, hop, smooth, threshold (keyword spotting). Changing backend or threads reloads the page: onnxruntime-web
// fixes them when its WebAssembly module starts.
//
// window.edgeformer is the page's state for scripts and tests: status, info, results (one per classified input:
// source, logits, input tensor, latency), windows (keyword windows: end time, logits), detections, and
// run(Float32Array) / benchmark(n) on the loaded model.

import * as ort from "/ort/ort.min.mjs";
import { imageTensor } from "./preprocess.js";
import { DEFAULTS, KeywordStream, softmax } from "./kws.js";
import { readWav } from "./wav.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const state = {
  status: "loading",
  error: null,
  info: null,
  results: [],
  windows: [],
  detections: [],
  latencies: [],
  run: null,
  benchmark: null,
};
window.edgeformer = state;

function fail(message) {
  state.status = "error";
  state.error = message;
  $("error").textContent = message;
  $("error").hidden = false;
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function setParam(name, value) {
  const p = new URLSearchParams(location.search);
  p.set(name, value);
  location.search = p.toString();
}

async function chooseBackend(requested) {
  if (requested === "wasm") return "wasm";
  const adapter = navigator.gpu ? await navigator.gpu.requestAdapter().catch(() => null) : null;
  if (requested === "webgpu" && !adapter) throw new Error("this browser offers no WebGPU adapter; choose backend wasm");
  return adapter ? "webgpu" : "wasm";
}

async function main() {
  const listing = await (await fetch("/api/models.json")).json();
  const models = listing.models;
  const id = Number(params.get("model") ?? 0);
  const model = models[id];
  if (!model) throw new Error(`no model ${id}; the server lists ${models.length}`);
  for (const m of models) $("model").add(new Option(`${m.name} (${m.precision})`, m.id, false, m.id === id));
  $("model").onchange = (e) => setParam("model", e.target.value);
  $("backend").value = params.get("backend") ?? "auto";
  $("backend").onchange = (e) => setParam("backend", e.target.value);
  $("threads").value = params.get("threads") ?? "auto";
  $("threads").onchange = (e) => setParam("threads", e.target.value);

  // Threads need SharedArrayBuffer, which browsers grant only to cross-origin isolated pages (COOP + COEP
  // headers); without it onnxruntime-web quietly runs one thread, so say it here.
  const isolated = self.crossOriginIsolated === true;
  const wanted = params.get("threads") ?? "auto";
  const cores = navigator.hardwareConcurrency || 1;
  ort.env.wasm.numThreads = wanted === "auto" ? (isolated ? Math.min(4, cores) : 1) : Number(wanted);
  ort.env.wasm.wasmPaths = "/ort/";
  if (!isolated) {
    $("isolation").textContent =
      "This page is not cross-origin isolated (no COOP/COEP headers), so onnxruntime-web runs 1 thread. " +
      "Serve it with `edgeformer app web` (without --no-isolation) for multi-threaded WebAssembly.";
    $("isolation").hidden = false;
  }

  const backend = await chooseBackend(params.get("backend") ?? "auto");
  const options = { executionProviders: [backend], graphOptimizationLevel: "all" };
  if (model.external_data.length) options.externalData = model.external_data.map((f) => ({ path: f.path, data: f.url }));
  const session = await ort.InferenceSession.create(model.url, options);
  const inputName = session.inputNames[0];
  const outputName = session.outputNames[0];
  const threads = backend === "wasm" ? ort.env.wasm.numThreads : null; // after init: what actually runs
  state.info = { model: model.name, precision: model.precision, size_bytes: model.size_bytes, backend, threads, isolated };
  $("info-model").textContent = `${model.name} · ${model.model_name} · ${model.format}/${model.precision}`;
  $("info-size").textContent = `${(model.size_bytes / 1e6).toFixed(2)} MB`;
  $("info-backend").textContent = `${backend} (onnxruntime-web ${ort.env.versions?.web ?? ""})`;
  $("info-threads").textContent = threads === null ? "n/a (GPU)" : `${threads}${isolated ? "" : " (not cross-origin isolated)"}`;

  const spec = model.preprocessing;
  const shape = spec.kind === "image" ? [1, spec.channels, spec.resolution, spec.resolution] : [1, model.input.shape[1]];
  const topk = Number(params.get("topk") ?? Math.min(5, model.labels.length));

  async function run(data) {
    const t0 = performance.now();
    const out = await session.run({ [inputName]: new ort.Tensor("float32", data, shape) });
    const ms = performance.now() - t0;
    state.latencies.push(ms);
    $("info-latency").textContent = `${median(state.latencies).toFixed(2)} ms over ${state.latencies.length} runs (last ${ms.toFixed(2)} ms)`;
    return { logits: Array.from(out[outputName].data), ms };
  }
  // one untimed run: the first call pays for allocations and kernel selection, not the model
  await session.run({ [inputName]: new ort.Tensor("float32", new Float32Array(shape.reduce((a, b) => a * b, 1)), shape) });
  state.run = async (data) => (await run(Float32Array.from(data))).logits;
  state.benchmark = async (n, warmup = 5) => {
    const x = new Float32Array(shape.reduce((a, b) => a * b, 1)).map((_, i) => Math.sin(i));
    for (let i = 0; i < warmup; i++) await session.run({ [inputName]: new ort.Tensor("float32", x, shape) });
    const times = [];
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      await session.run({ [inputName]: new ort.Tensor("float32", x, shape) });
      times.push(performance.now() - t0);
    }
    return { p50_ms: median(times), runs: n, times };
  };

  if (spec.kind === "image") setupImage(spec, model.labels, topk, run);
  else setupAudio(spec, model, run);
  state.status = "ready";
  document.body.dataset.status = "ready";
}

// --- images ----------------------------------------------------------------------------------------------
function setupImage(spec, labels, topk, run) {
  $("image-panel").hidden = false;
  let busy = false;

  async function classify(source, rgba, w, h) {
    const input = imageTensor(rgba, w, h, spec);
    const { logits, ms } = await run(input);
    const probs = softmax(logits);
    const top = probs.map((p, i) => ({ label: labels[i], index: i, score: p })).sort((a, b) => b.score - a.score).slice(0, topk);
    state.results.push({ source, logits, input: Array.from(input), top, ms });
    showPreview(input, spec);
    $("topk").tBodies[0].replaceChildren(
      ...top.map((t) => {
        const tr = document.createElement("tr");
        tr.innerHTML = `<td>${t.label}</td><td><meter min="0" max="1" value="${t.score}"></meter> ${t.score.toFixed(4)}</td>`;
        return tr;
      }),
    );
    $("image-source").textContent = `${source}: ${top[0].label} (${(100 * top[0].score).toFixed(1)} %) in ${ms.toFixed(2)} ms`;
  }

  async function classifyFile(file) {
    // no colour management and no premultiplication: the pixels as stored, as Pillow reads them
    const bitmap = await createImageBitmap(file, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
    const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(bitmap, 0, 0);
    const { data } = ctx.getImageData(0, 0, bitmap.width, bitmap.height);
    await classify(file.name, data, bitmap.width, bitmap.height);
  }

  const report = (e) => fail(`could not classify: ${e.message ?? e}`);
  $("file").onchange = (e) => e.target.files[0] && classifyFile(e.target.files[0]).catch(report);
  const zone = $("dropzone");
  zone.ondragover = (e) => {
    e.preventDefault();
    zone.classList.add("over");
  };
  zone.ondragleave = () => zone.classList.remove("over");
  zone.ondrop = (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    const file = [...(e.dataTransfer?.files ?? [])].find((f) => f.type.startsWith("image/") || /\.(png|jpe?g|gif|bmp|webp)$/i.test(f.name));
    if (file) classifyFile(file).catch(report);
  };

  $("camera").onclick = async () => {
    const video = $("video");
    if (video.srcObject) {
      video.srcObject.getTracks().forEach((t) => t.stop());
      video.srcObject = null;
      video.hidden = true;
      $("camera").textContent = "Start webcam";
      return;
    }
    try {
      video.srcObject = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240 }, audio: false });
    } catch (e) {
      return fail(`no webcam: ${e.message}`);
    }
    await video.play();
    video.hidden = false;
    $("camera").textContent = "Stop webcam";
    const canvas = document.createElement("canvas");
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    const tick = async () => {
      if (!video.srcObject) return;
      if (!busy && video.videoWidth) {
        busy = true;
        canvas.width = video.videoWidth;
        canvas.height = video.videoHeight;
        ctx.drawImage(video, 0, 0);
        const { data } = ctx.getImageData(0, 0, canvas.width, canvas.height);
        await classify("webcam", data, canvas.width, canvas.height).catch(report);
        busy = false;
      }
      video.requestVideoFrameCallback(tick);
    };
    video.requestVideoFrameCallback(tick);
  };
}

function showPreview(input, spec) {
  // what the model sees, de-normalized
  const r = spec.resolution;
  const canvas = $("preview");
  canvas.width = canvas.height = r;
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(r, r);
  for (let i = 0; i < r * r; i++) {
    for (let c = 0; c < 3; c++) {
      const ch = spec.channels === 1 ? 0 : c;
      img.data[i * 4 + c] = 255 * (input[ch * r * r + i] * spec.std[ch] + spec.mean[ch]);
    }
    img.data[i * 4 + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
}

// --- audio -------------------------------------------------------------------------------------------------
function setupAudio(spec, model, run) {
  $("audio-panel").hidden = false;
  const labels = model.labels;
  const config = {
    labels,
    sampleRate: spec.sample_rate,
    windowSamples: model.input.shape[1],
    hopSeconds: Number(params.get("hop") ?? DEFAULTS.hopSeconds),
    smooth: Number(params.get("smooth") ?? DEFAULTS.smooth),
    threshold: Number(params.get("threshold") ?? DEFAULTS.threshold),
  };
  const bars = labels.map((label) => {
    const row = document.createElement("div");
    row.className = "bar";
    row.innerHTML = `<span>${label}</span><meter min="0" max="1" value="0"></meter>`;
    $("bars").append(row);
    return row.querySelector("meter");
  });

  async function analyze(stream, windows, source) {
    for (const w of windows) {
      const { logits, ms } = await run(w.samples);
      const { smoothed, detection } = stream.observe(softmax(logits), w.endSeconds);
      state.windows.push({ source, endSeconds: w.endSeconds, logits, ms, input: w.samples });
      smoothed.forEach((p, i) => (bars[i].value = p));
      if (detection) {
        state.detections.push({ source, ...detection });
        const li = document.createElement("li");
        li.textContent = `${detection.timeSeconds.toFixed(2)} s  ${detection.label}  (${detection.score.toFixed(2)})`;
        $("detections").append(li);
      }
    }
  }

  $("wav").onchange = async (e) => {
    const file = e.target.files[0];
    if (!file) return;
    try {
      const bytes = await file.arrayBuffer();
      let { sampleRate, samples } = readWav(bytes);
      let note = "";
      if (sampleRate !== spec.sample_rate) {
        // edgeformer's Python side refuses another rate; the page lets the browser resample, and says so
        const decoded = await new OfflineAudioContext(1, 1, spec.sample_rate).decodeAudioData(bytes);
        samples = decoded.getChannelData(0);
        note = ` (resampled by the browser from ${sampleRate} Hz)`;
        sampleRate = spec.sample_rate;
      }
      const mono = new Float32Array(Math.max(samples.length, config.windowSamples)); // short: zero-padded to one window
      mono.set(samples);
      const stream = new KeywordStream(config);
      $("audio-status").textContent = `${file.name}: ${(samples.length / sampleRate).toFixed(2)} s${note}`;
      await analyze(stream, stream.push(mono), file.name);
      const first = state.windows.find((w) => w.source === file.name);
      state.results.push({ source: file.name, logits: first.logits, input: Array.from(first.input) });
    } catch (err) {
      fail(`could not analyze ${file.name}: ${err.message ?? err}`);
    }
  };

  let mic = null;
  $("mic").onclick = async () => {
    if (mic) {
      mic.media.getTracks().forEach((t) => t.stop());
      await mic.context.close();
      mic = null;
      $("mic").textContent = "Start microphone";
      return;
    }
    let media;
    try {
      // the raw signal: the model was trained without browser echo cancellation, denoising or gain control
      media = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
      });
    } catch (e) {
      return fail(`no microphone: ${e.message}`);
    }
    // the context runs at the model's rate: the browser resamples the microphone
    const context = new AudioContext({ sampleRate: spec.sample_rate });
    await context.audioWorklet.addModule("audio-worklet.js");
    const node = new AudioWorkletNode(context, "edgeformer-capture", { processorOptions: { chunk: Math.round(spec.sample_rate / 10) } });
    const stream = new KeywordStream(config);
    let pending = [];
    let busy = false;
    node.port.onmessage = async (e) => {
      pending.push(...stream.push(e.data));
      if (pending.length > 4) pending = pending.slice(-4); // inference slower than real time: drop the oldest
      if (busy) return;
      busy = true;
      while (pending.length) await analyze(stream, [pending.shift()], "microphone").catch((err) => fail(err.message));
      busy = false;
      $("audio-status").textContent = `listening: ${(stream.received / spec.sample_rate).toFixed(1)} s of audio`;
    };
    // pulled by the graph only when it leads to the destination: through a muted gain, so nothing is heard
    const mute = new GainNode(context, { gain: 0 });
    context.createMediaStreamSource(media).connect(node).connect(mute).connect(context.destination);
    mic = { media, context };
    state.micStarted = true;
    $("mic").textContent = "Stop microphone";
  };
}

main().catch((e) => fail(`${e.message ?? e}`));
