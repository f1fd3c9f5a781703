import { topKGroupsFor } from '@app/model';
import { bruteTopK, runWideVocabModel, WIDE_VOCAB } from '../testing/wide-vocab-model';
import { bestOfGroups, mergeTopGroups } from './graph-io';

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
    const run = await runWideVocabModel('cpu', 3);
    const { io } = run.manifest;
    expect(io.topGroups).toBe(3);
    expect(run.topIdsDims).toEqual([2, 3 * io.topK]);
    for (let b = 0; b < 2; b++) {
      const merged = mergeTopGroups(run.topIds, run.topLogits, b, io.topK, 3, 2048);
      const expected = bruteTopK(run.logits.subarray(b * WIDE_VOCAB, (b + 1) * WIDE_VOCAB), io.topK);
      expect(merged.ids).toEqual(expected.ids);
      expect(Array.from(merged.logits)).toEqual(expected.logits.map(Math.fround));
    }
  });
});
