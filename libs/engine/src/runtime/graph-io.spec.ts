import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { createRandomModel, topKGroupsFor, TINY_SHAPE } from '@app/model';
import { bestOfGroups, mergeTopGroups } from './graph-io';

/** The k largest of `values`, descending, ties by lower id. */
function bruteTopK(values: ArrayLike<number>, k: number): { ids: number[]; logits: number[] } {
  const order = Array.from({ length: values.length }, (_, i) => i).sort((a, b) => values[b] - values[a] || a - b).slice(0, k);
  return { ids: order, logits: order.map((i) => values[i]) };
}

describe('grouped top-k outputs', () => {
  it('splits a vocabulary into groups of at most 2048 that hold at least k', () => {
    expect(topKGroupsFor(65024, 64)).toBe(32); // 2032 each
    expect(topKGroupsFor(384, 64)).toBe(1);
    expect(topKGroupsFor(6144, 64)).toBe(3);
    expect(topKGroupsFor(4099, 64)).toBe(1); // prime: no equal split
  });

  it('merges per-group sorted candidates into the exact top k, ties to the lower id', () => {
    let seed = 7;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const groups = 5;
    const width = 40;
    const k = 8;
    for (let trial = 0; trial < 20; trial++) {
      // Few distinct values, so ties across groups are common.
      const row = Array.from({ length: groups * width }, () => Math.round(random() * 20) / 4);
      const ids = new BigInt64Array(groups * k);
      const logits = new Float32Array(groups * k);
      for (let g = 0; g < groups; g++) {
        const top = bruteTopK(row.slice(g * width, (g + 1) * width), k);
        top.ids.forEach((id, j) => (ids[g * k + j] = BigInt(id)));
        logits.set(top.logits, g * k);
      }
      const merged = mergeTopGroups(ids, logits, 0, k, groups, width);
      expect({ ids: merged.ids, logits: Array.from(merged.logits) }).toEqual(bruteTopK(row, k));
      expect(bestOfGroups(ids, logits, 0, k, groups, width)).toBe(merged.ids[0]);
    }
  });

  it('a model with a wide vocabulary returns per-group candidates that merge into the top k of its logits', async () => {
    const work = fs.mkdtempSync(path.join(os.tmpdir(), 'falconq-groups-'));
    try {
      const { manifest } = await createRandomModel({ out: path.join(work, 'm'), shape: { ...TINY_SHAPE, vocabSize: 6144 }, target: 'cpu', seed: 3 });
      const { io, shape } = manifest;
      expect(io.topGroups).toBe(3);
      const session = await ort.InferenceSession.create(path.join(work, 'm', manifest.files.model));
      const feeds: Record<string, ort.Tensor> = {
        [io.inputIds]: new ort.Tensor('int64', BigInt64Array.from([5n, 6n, 7n, 0n, 9n, 10n, 11n, 12n]), [2, 4]),
        [io.attentionMask]: new ort.Tensor('int64', BigInt64Array.from([1n, 1n, 1n, 0n, 1n, 1n, 1n, 1n]), [2, 4]),
      };
      for (let layer = 0; layer < shape.numLayers; layer++) {
        for (const pattern of [io.pastKey, io.pastValue]) {
          feeds[pattern.replace('%d', String(layer))] = new ort.Tensor('float32', new Float32Array(0), [2, shape.numKvHeads, 0, shape.headDim]);
        }
      }
      const out = await session.run(feeds, [io.logits, io.topIds, io.topLogits]);
      expect(out[io.topIds].dims).toEqual([2, 3 * io.topK]);
      const logits = out[io.logits].data as Float32Array;
      for (let b = 0; b < 2; b++) {
        const merged = mergeTopGroups(out[io.topIds].data as BigInt64Array, out[io.topLogits].data as Float32Array, b, io.topK, 3, 2048);
        const expected = bruteTopK(logits.subarray(b * 6144, (b + 1) * 6144), io.topK);
        expect(merged.ids).toEqual(expected.ids);
        expect(Array.from(merged.logits)).toEqual(expected.logits.map(Math.fround));
      }
      await session.release();
    } finally {
      fs.rmSync(work, { recursive: true, force: true });
    }
  });
});
