// Image preprocessing in the browser, driven by the artifact's ImageInput (edgeformer/inputs.py) and equal to
// edgeformer's Python pipeline (edgeformer/data/images.py) on the same pixels:
//   1. RGB (or L with ITU-R 601-2 weights, as Pillow's convert("L")), alpha dropped;
//   2. resize the shorter side to floor(resolution / crop_pct) with Pillow's resampling (a port of
//      libImaging/Resample.c: separable, antialiased when shrinking, 8-bit fixed point between the passes);
//   3. center crop resolution x resolution (torchvision's rounding);
//   4. (x / 255 - mean) / std in float32, NCHW.
// Canvas scaling would be simpler but interpolates differently, and the page's logits are tested against
// Python onnxruntime's within 1e-4: so the pixels must be Pillow's, not the browser's.

const FILTERS = {
  // support, kernel
  nearest: null,
  bilinear: [1.0, (x) => (Math.abs(x) < 1.0 ? 1.0 - Math.abs(x) : 0.0)],
  bicubic: [
    2.0,
    (x) => {
      const a = -0.5;
      x = Math.abs(x);
      if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
      if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
      return 0.0;
    },
  ],
};
const PRECISION_BITS = 32 - 8 - 2;

function coefficients(inSize, outSize, filter) {
  const [support0, kernel] = filter;
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1.0);
  const support = support0 * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const kk = new Int32Array(outSize * ksize);
  const w = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    let ww = 0.0;
    for (let x = 0; x < xmax; x++) {
      w[x] = kernel((x + xmin - center + 0.5) / filterscale);
      ww += w[x];
    }
    for (let x = 0; x < xmax; x++) {
      const k = ww !== 0.0 ? w[x] / ww : w[x];
      // normalize_coeffs_8bpc: round half away from zero into fixed point
      kk[xx * ksize + x] = k < 0 ? Math.trunc(-0.5 + k * (1 << PRECISION_BITS)) : Math.trunc(0.5 + k * (1 << PRECISION_BITS));
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { ksize, bounds, kk };
}

function clip8(ss) {
  const v = ss >> PRECISION_BITS;
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

// One pass of Pillow's 8-bit resampling along x (horizontal) or y, on interleaved uint8 pixels.
function resamplePass(src, w, h, c, outSize, filter, horizontal) {
  const { ksize, bounds, kk } = coefficients(horizontal ? w : h, outSize, filter);
  const ow = horizontal ? outSize : w;
  const oh = horizontal ? h : outSize;
  const out = new Uint8ClampedArray(ow * oh * c);
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++) {
      const o = horizontal ? x : y;
      const min = bounds[o * 2];
      const n = bounds[o * 2 + 1];
      for (let ch = 0; ch < c; ch++) {
        let ss = 1 << (PRECISION_BITS - 1);
        for (let i = 0; i < n; i++) {
          const p = horizontal ? (y * w + min + i) * c + ch : ((min + i) * w + x) * c + ch;
          ss += src[p] * kk[o * ksize + i];
        }
        out[(y * ow + x) * c + ch] = clip8(ss);
      }
    }
  }
  return out;
}

function resizeNearest(src, w, h, c, ow, oh) {
  // Pillow's NEAREST resize is an affine transform sampling at floor((x + 0.5) * scale)
  const out = new Uint8ClampedArray(ow * oh * c);
  for (let y = 0; y < oh; y++) {
    const sy = Math.min(h - 1, Math.floor((y + 0.5) * (h / oh)));
    for (let x = 0; x < ow; x++) {
      const sx = Math.min(w - 1, Math.floor((x + 0.5) * (w / ow)));
      for (let ch = 0; ch < c; ch++) out[(y * ow + x) * c + ch] = src[(sy * w + sx) * c + ch];
    }
  }
  return out;
}

export function resize(src, w, h, c, ow, oh, interpolation) {
  if (!(interpolation in FILTERS)) throw new Error(`unknown interpolation ${interpolation}`);
  if (ow === w && oh === h) return src;
  if (interpolation === "nearest") return resizeNearest(src, w, h, c, ow, oh);
  const filter = FILTERS[interpolation];
  let out = src;
  let cw = w;
  if (ow !== w) {
    out = resamplePass(out, cw, h, c, ow, filter, true);
    cw = ow;
  }
  if (oh !== h) out = resamplePass(out, cw, h, c, oh, filter, false);
  return out;
}

// RGBA (canvas ImageData) to packed RGB, or to L with Pillow's integer luma ((r*19595 + g*38470 + b*7471 + 0x8000) >> 16)
export function fromRGBA(rgba, w, h, channels) {
  const out = new Uint8ClampedArray(w * h * channels);
  for (let i = 0; i < w * h; i++) {
    const r = rgba[i * 4];
    const g = rgba[i * 4 + 1];
    const b = rgba[i * 4 + 2];
    if (channels === 1) out[i] = (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16;
    else {
      out[i * 3] = r;
      out[i * 3 + 1] = g;
      out[i * 3 + 2] = b;
    }
  }
  return out;
}

// The model input (Float32Array, NCHW, batch 1) for RGBA pixels of a w x h image, per the manifest's spec.
export function imageTensor(rgba, w, h, spec) {
  const c = spec.channels;
  const res = spec.resolution;
  let px = fromRGBA(rgba, w, h, c);
  const scale = Math.floor(res / spec.crop_pct);
  const [rw, rh] = w <= h ? [scale, Math.trunc((scale * h) / w)] : [Math.trunc((scale * w) / h), scale];
  px = resize(px, w, h, c, rw, rh, spec.interpolation);
  const top = roundHalfEven((rh - res) / 2.0);
  const left = roundHalfEven((rw - res) / 2.0);
  const out = new Float32Array(c * res * res);
  const mean = spec.mean.map(Math.fround);
  const std = spec.std.map(Math.fround);
  for (let ch = 0; ch < c; ch++) {
    for (let y = 0; y < res; y++) {
      for (let x = 0; x < res; x++) {
        const v = Math.fround(px[((top + y) * rw + left + x) * c + ch] / 255);
        out[(ch * res + y) * res + x] = Math.fround(v - mean[ch]) / std[ch];
      }
    }
  }
  return out;
}

// Python's round(): halves to even (the crop offset of torchvision's CenterCrop, as edgeformer computes it)
function roundHalfEven(v) {
  const f = Math.floor(v);
  const d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}
