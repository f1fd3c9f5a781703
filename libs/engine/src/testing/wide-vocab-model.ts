// A tiny random Falcon with a 6144-id vocabulary (3 TopK groups of 2048), run once on two right-padded prompts:
// what the grouped top-k tests on cpu and on webgpu both check.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { createRandomModel, type ModelManifest, TINY_SHAPE } from '@app/model';

export const WIDE_VOCAB = 6144;

export interface WideVocabRun {
  manifest: ModelManifest;
  topIds: BigInt64Array;
  topIdsDims: readonly number[];
  topLogits: Float32Array;
  logits: Float32Array;
}

/** cpu target on the cpu EP (fp32), gpu target on the webgpu EP (fp16). */
export async function runWideVocabModel(target: 'cpu' | 'gpu', seed: number): Promise<WideVocabRun> {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'falconq-wide-vocab-'));
  try {
    const { manifest } = await createRandomModel({ out: path.join(work, 'm'), shape: { ...TINY_SHAPE, vocabSize: WIDE_VOCAB }, target, seed });
    const { io, shape } = manifest;
    const session = await ort.InferenceSession.create(path.join(work, 'm', manifest.files.model), { executionProviders: [target === 'gpu' ? 'webgpu' : 'cpu'] });
    const feeds: Record<string, ort.Tensor> = {
      [io.inputIds]: new ort.Tensor('int64', BigInt64Array.from([5n, 6n, 7n, 0n, 9n, 10n, 11n, 12n]), [2, 4]),
      [io.attentionMask]: new ort.Tensor('int64', BigInt64Array.from([1n, 1n, 1n, 0n, 1n, 1n, 1n, 1n]), [2, 4]),
    };
    const empty = target === 'gpu' ? new ort.Tensor('float16', new Uint16Array(0), [2, shape.numKvHeads, 0, shape.headDim]) : new ort.Tensor('float32', new Float32Array(0), [2, shape.numKvHeads, 0, shape.headDim]);
    for (let layer = 0; layer < shape.numLayers; layer++) {
      for (const pattern of [io.pastKey, io.pastValue]) feeds[pattern.replace('%d', String(layer))] = empty;
    }
    const out = await session.run(feeds, [io.logits, io.topIds, io.topLogits]);
    await session.release();
    return {
      manifest,
      topIds: out[io.topIds].data as BigInt64Array,
      topIdsDims: out[io.topIds].dims,
      topLogits: out[io.topLogits].data as Float32Array,
      logits: out[io.logits].data as Float32Array,
    };
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/** The k largest of `values`, descending, ties by lower id. */
export function bruteTopK(values: ArrayLike<number>, k: number): { ids: number[]; logits: number[] } {
  const order = Array.from({ length: values.length }, (_, i) => i).sort((a, b) => values[b] - values[a] || a - b).slice(0, k);
  return { ids: order, logits: order.map((i) => values[i]) };
}
