import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { MANIFEST_FILE, type ModelManifest } from '@app/model';
import { tinyModelDir } from '../support/tiny-model';

function emptyPast(manifest: ModelManifest, batch: number): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {};
  const dims = [batch, manifest.shape.numKvHeads, 0, manifest.shape.headDim];
  for (let layer = 0; layer < manifest.shape.numLayers; layer++) {
    feeds[manifest.io.pastKey.replace('%d', String(layer))] = new ort.Tensor('float32', new Float32Array(0), dims);
    feeds[manifest.io.pastValue.replace('%d', String(layer))] = new ort.Tensor('float32', new Float32Array(0), dims);
  }
  return feeds;
}

describe.each(['int4', 'fp32'] as const)('tiny model (%s weights)', (weights) => {
  it('loads in onnxruntime-node and returns finite, non-degenerate logits with a consistent top-k', async () => {
    const dir = await tinyModelDir({ weights });
    const manifest = JSON.parse(fs.readFileSync(path.join(dir, MANIFEST_FILE), 'utf8')) as ModelManifest;
    expect(manifest.weights.dtype).toBe(weights);
    for (const file of Object.values(manifest.files)) expect(fs.existsSync(path.join(dir, file))).toBe(true);
    const session = await ort.InferenceSession.create(path.join(dir, manifest.files.model));
    const vocab = manifest.shape.vocabSize;
    const output = await session.run({
      input_ids: new ort.Tensor('int64', BigInt64Array.from([40n, 41n, 42n, 43n]), [1, 4]),
      attention_mask: new ort.Tensor('int64', BigInt64Array.from([1n, 1n, 1n, 1n]), [1, 4]),
      ...emptyPast(manifest, 1),
    });
    const logits = output[manifest.io.logits];
    expect(logits.dims).toEqual([1, 1, vocab]);
    const values = Array.from(logits.data as Float32Array);
    expect(values.every(Number.isFinite)).toBe(true);
    const mean = values.reduce((a, b) => a + b, 0) / vocab;
    const std = Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / vocab);
    expect(std).toBeGreaterThan(0.1);
    const topIds = Array.from(output[manifest.io.topIds].data as BigInt64Array, Number);
    const topLogits = Array.from(output[manifest.io.topLogits].data as Float32Array);
    expect(output[manifest.io.topIds].dims).toEqual([1, manifest.io.topK]);
    const sorted = values.map((v, i) => [v, i] as const).sort((a, b) => b[0] - a[0]);
    expect(topIds[0]).toBe(sorted[0][1]);
    expect(topLogits[0]).toBeCloseTo(sorted[0][0], 5);
    topLogits.forEach((v, i) => expect(v).toBeCloseTo(values[topIds[i]], 5));
  });
});
