// Translation in the browser, computed as the SavedModel computes it
// (pix2pix_tf/serving/signatures.py, tiling.py), for the page that
// `export --format=web` writes:
//
// * native resolution: the generator runs on the image itself,
//   reflect-padded to a multiple of its downsampling and cropped back;
// * tiles: native resolution, tile by tile, the overlaps blended by linear
//   ramps (predict --tile), so that memory is bounded by the tile;
// * training resolution: the image resized to the scale the generator was
//   trained at, with TensorFlow's antialiased bicubic resize, translated,
//   and the output resized back.
//
// Images are {width, height, data, step}: data holds a pixel's values at
// every `step` (3, or 4 for a canvas's RGBA, whose alpha is passed over),
// row by row. `run(data, height, width)` runs the generator on
// [1, height, width, 3] floats in [-1, 1] and resolves to its output.

// Indices into a side of `side` pixels that mirror it, without repeating
// the edge pixel, from `before` pixels before its start to `total` in all:
// the SavedModel's reflect padding (pix2pix_tf.data.transforms).
function mirrored(side, before, total) {
  const period = Math.max(2 * (side - 1), 1);
  return Array.from({length: total}, (_, i) => {
    const k = (((i - before) % period) + period) % period;
    return k >= side ? period - k : k;
  });
}

// `image` (values 0..255) translated at its own size: [-1, 1] floats.
async function native(run, image, multiple) {
  const {width: w, height: h} = image;
  const height = h + (multiple - h % multiple) % multiple;
  const width = w + (multiple - w % multiple) % multiple;
  const top = Math.floor((height - h) / 2), left = Math.floor((width - w) / 2);
  const rows = mirrored(h, top, height), cols = mirrored(w, left, width);
  const x = new Float32Array(height * width * 3);
  for (let i = 0; i < height; i++) {
    for (let j = 0; j < width; j++) {
      const from = (rows[i] * w + cols[j]) * image.step;
      const to = (i * width + j) * 3;
      for (let c = 0; c < 3; c++) x[to + c] = image.data[from + c] / 127.5 - 1;
    }
  }
  const y = await run(x, height, width);
  const out = new Float32Array(h * w * 3);
  for (let i = 0; i < h; i++) {
    out.set(y.subarray(((i + top) * width + left) * 3,
                       ((i + top) * width + left + w) * 3), i * w * 3);
  }
  return {width: w, height: h, data: out, step: 3};
}

// [-1, 1] -> 0..255 as the SavedModel's to_uint8: (v + 1) * 127.5 in
// float32 (Math.fround), clipped and rounded half to even (a
// Uint8ClampedArray's conversion).
function toUint8(image) {
  const data = new Uint8ClampedArray(image.data.length);
  for (let k = 0; k < data.length; k++) {
    data[k] = Math.fround(Math.fround(image.data[k] + 1) * 127.5);
  }
  return {width: image.width, height: image.height, data, step: 3};
}

// Keys's cubic (a = -0.5), the kernel of tf.image.resize's bicubic.
function keysCubic(x) {
  x = Math.abs(x);
  if (x >= 2) return 0;
  if (x >= 1) return ((-0.5 * x + 2.5) * x - 4) * x + 2;
  return (1.5 * x - 2.5) * x * x + 1;
}

// For each of `outSize` samples, where its source span starts and its
// normalised weights: TensorFlow's scale_and_translate with antialias,
// which widens the kernel by the scale when shrinking. (A canvas's
// drawImage resamples with a filter the browser picks, not this one.)
function resampling(inSize, outSize) {
  const inverse = inSize / outSize, widen = Math.max(inverse, 1);
  return Array.from({length: outSize}, (_, x) => {
    const sample = (x + 0.5) * inverse;
    const clamp = (v) => Math.min(Math.max(v, 0), inSize - 1);
    const start = clamp(Math.ceil(sample - 2 * widen - 0.5));
    const end = clamp(Math.floor(sample + 2 * widen - 0.5)) + 1;
    const weights = [];
    for (let s = start; s < end; s++) {
      weights.push(keysCubic((s + 0.5 - sample) / widen));
    }
    const total = weights.reduce((a, b) => a + b, 0);
    return {start, weights: weights.map((v) => v / total)};
  });
}

// `image` resized to width x height (float values), one axis at a time.
function resize(image, width, height) {
  const across = resampling(image.width, width), step = image.step;
  const wide = new Float32Array(image.height * width * 3);
  for (let i = 0; i < image.height; i++) {
    across.forEach(({start, weights}, j) => {
      for (let c = 0; c < 3; c++) {
        let sum = 0;
        weights.forEach((v, k) => {
          sum += v * image.data[(i * image.width + start + k) * step + c];
        });
        wide[(i * width + j) * 3 + c] = sum;
      }
    });
  }
  const down = resampling(image.height, height);
  const out = new Float32Array(height * width * 3);
  down.forEach(({start, weights}, i) => {
    for (let j = 0; j < width * 3; j++) {
      let sum = 0;
      weights.forEach((v, k) => {
        sum += v * wide[(start + k) * width * 3 + j];
      });
      out[i * width * 3 + j] = sum;
    }
  });
  return {width, height, data: out, step: 3};
}

// The size the generator was trained at, for an image of `height` x
// `width` (pix2pix_tf.data.transforms.scaled_size): the crop square, or
// for scale_width* the training width with the aspect kept.
function trainingSize(height, width, model) {
  if (!model.preprocess.startsWith("scale_width")) {
    return [model.image_size, model.image_size];
  }
  if (width === model.load_size && height >= model.image_size) {
    return [height, width];
  }
  return [Math.max(Math.floor(model.load_size * height / width),
                   model.image_size), model.load_size];
}

// At the training resolution: resized (and clipped to 0..255), translated,
// and the output resized back to the image's size.
async function atTrainingSize(run, image, model) {
  const [height, width] = trainingSize(image.height, image.width, model);
  const resized = resize(image, width, height);
  resized.data = resized.data.map((v) => Math.min(Math.max(v, 0), 255));
  const generated = await native(run, resized, model.multiple);
  return toUint8(resize(generated, image.width, image.height));
}

// Where the tiles along a side of `length` pixels start: as few tiles of
// `tile` pixels as cover it with neighbours sharing at least `overlap`,
// spread evenly, the first at 0 and the last ending at `length`; a half
// rounded to even, as Python's round() in tiling.tile_starts.
function tileStarts(length, tile, overlap) {
  if (length <= tile) return [0];
  const count = Math.ceil((length - overlap) / (tile - overlap));
  return Array.from({length: count}, (_, i) => {
    const numerator = i * (length - tile), denominator = count - 1;
    const floor = Math.floor(numerator / denominator);
    const twice = 2 * (numerator - floor * denominator);
    if (twice !== denominator) return twice > denominator ? floor + 1 : floor;
    return floor % 2 ? floor + 1 : floor;
  });
}

// A tile's blending weights along one side (tiling.ramp): rising linearly
// from 0 at an edge shared with a neighbour to 1 after `overlap` (at least
// 2) pixels, 1 on the image's border.
function ramp(start, size, length, overlap) {
  const weights = new Float32Array(size).fill(1);
  for (let k = 0; k < overlap; k++) {
    const rising = k / (overlap - 1);
    if (start > 0) weights[k] = rising;
    if (start + size < length) {
      weights[size - 1 - k] = Math.min(weights[size - 1 - k], rising);
    }
  }
  return weights;
}

// In tiles (tiling.translate_tiled): each tile translated to 8 bits at
// native resolution, and every pixel the weighted mean of the tiles that
// cover it. The sums are kept for one row of tiles (memory bounded by the
// tile, not the image); `progress(tile, tiles)` before each tile.
async function inTiles(run, image, model, progress) {
  const {width, height} = image, {tile, overlap} = model.tiles;
  const tileHeight = Math.min(tile, height), tileWidth = Math.min(tile, width);
  const rows = tileStarts(height, tile, overlap);
  const columns = tileStarts(width, tile, overlap);
  const columnWeights = columns.map((x) => ramp(x, tileWidth, width, overlap));
  const out = new Uint8ClampedArray(height * width * 3);
  // Row r of the sums is row y + r of the image.
  let total = new Float32Array(tileHeight * width * 3);
  let weight = new Float32Array(tileHeight * width);
  for (const [m, y] of rows.entries()) {
    const rowWeights = ramp(y, tileHeight, height, overlap);
    for (const [n, x] of columns.entries()) {
      progress(m * columns.length + n + 1, rows.length * columns.length);
      const step = image.step, span = tileWidth * step;
      const piece = new image.data.constructor(tileHeight * span);
      for (let i = 0; i < tileHeight; i++) {
        const from = ((y + i) * width + x) * step;
        piece.set(image.data.subarray(from, from + span), i * span);
      }
      const translated = toUint8(await native(
          run, {width: tileWidth, height: tileHeight, data: piece, step},
          model.multiple)).data;
      // In float32 arithmetic (Math.fround), as tiling.py's numpy: a blend
      // of two tiles often lands on a half level exactly, and which way it
      // rounds then depends on the last bit.
      for (let i = 0; i < tileHeight; i++) {
        for (let j = 0; j < tileWidth; j++) {
          const w = Math.fround(rowWeights[i] * columnWeights[n][j]);
          const at = i * width + x + j;
          weight[at] += w;
          for (let c = 0; c < 3; c++) {
            total[at * 3 + c] += Math.fround(
                translated[(i * tileWidth + j) * 3 + c] * w);
          }
        }
      }
    }
    // Rows above the next row of tiles are complete: written out, and
    // the rest of the sums moved up.
    const done = (m + 1 < rows.length ? rows[m + 1] : height) - y;
    for (let at = 0; at < done * width; at++) {
      for (let c = 0; c < 3; c++) {
        out[(y * width + at) * 3 + c] =
            Math.fround(total[at * 3 + c] / weight[at]);
      }
    }
    for (const [sums, size] of [[total, width * 3], [weight, width]]) {
      sums.copyWithin(0, done * size).fill(0, sums.length - done * size);
    }
  }
  return {width, height, data: out};
}

// The translation of `pixels` (ImageData) as `model` (the page's
// CONFIG.browser) says: at training resolution, in tiles when `tiled`,
// else at native resolution. ImageData of the same size.
export async function translateImage(run, pixels, model, tiled, progress) {
  const {width, height} = pixels;
  const image = {width, height, data: pixels.data, step: 4};
  const translated = model.resolution === "training" ?
      await atTrainingSize(run, image, model) :
      tiled ? await inTiles(run, image, model, progress) :
      toUint8(await native(run, image, model.multiple));
  const out = new ImageData(width, height);
  for (let k = 0; k < width * height; k++) {
    for (let c = 0; c < 3; c++) {
      out.data[k * 4 + c] = translated.data[k * 3 + c];
    }
    out.data[k * 4 + 3] = 255;
  }
  return out;
}
