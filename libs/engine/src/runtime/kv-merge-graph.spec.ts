import * as ort from 'onnxruntime-node';
import { buildKvMergeGraph, buildKvReorderGraph, mergeNames } from './kv-merge-graph';

describe('KV merge graph', () => {
  it('writes the selected fresh rows, zero-padded to the cache length, into the given batch rows', async () => {
    const session = await ort.InferenceSession.create(buildKvMergeGraph({ tensors: 2, kvType: 'float32', kvHeads: 1, headDim: 2 }));
    const batch = new ort.Tensor('float32', Float32Array.from({ length: 3 * 4 * 2 }, (_, i) => -1 - i), [3, 1, 4, 2]);
    const fresh = new ort.Tensor('float32', Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8]), [2, 1, 2, 2]);
    const out = await session.run({
      [mergeNames.batch(0)]: batch,
      [mergeNames.batch(1)]: batch,
      [mergeNames.fresh(0)]: fresh,
      [mergeNames.fresh(1)]: fresh,
      [mergeNames.select]: new ort.Tensor('int64', BigInt64Array.from([1n, 0n]), [2]),
      [mergeNames.rows]: new ort.Tensor('int64', BigInt64Array.from([2n, 0n]), [2, 1]),
      [mergeNames.pads]: new ort.Tensor('int64', BigInt64Array.from([0n, 0n, 0n, 0n, 0n, 0n, 2n, 0n]), [8]),
    });
    const merged = Array.from(out[mergeNames.merged(1)].data as Float32Array);
    expect(out[mergeNames.merged(1)].dims).toEqual([3, 1, 4, 2]);
    expect(merged.slice(0, 8)).toEqual([1, 2, 3, 4, 0, 0, 0, 0]); // row 0 <- fresh row 0
    expect(merged.slice(8, 16)).toEqual(Array.from({ length: 8 }, (_, i) => -9 - i)); // row 1 untouched
    expect(merged.slice(16, 24)).toEqual([5, 6, 7, 8, 0, 0, 0, 0]); // row 2 <- fresh row 1
  });

  it('reorders the batch rows and sets the length: rows repeated or dropped, positions added (zeros) or cut', async () => {
    const reorder = await ort.InferenceSession.create(buildKvReorderGraph({ tensors: 1, kvType: 'float32', kvHeads: 1, headDim: 1 }));
    const batch = new ort.Tensor('float32', Float32Array.from([10, 11, 20, 21, 30, 31]), [3, 1, 2, 1]);
    const int64 = (values: number[]) => new ort.Tensor('int64', BigInt64Array.from(values, BigInt), [values.length]);
    const run = async (rows: number[], length: number) => (await reorder.run({
      [mergeNames.batch(0)]: batch,
      [mergeNames.order]: int64(rows),
      [mergeNames.pads]: int64([0, 0, 0, 0, 0, 0, Math.max(0, length - 2), 0]),
      [mergeNames.length]: int64([length]),
      [mergeNames.starts]: int64([0]),
      [mergeNames.axes]: int64([2]),
    }))[mergeNames.merged(0)];
    const grown = await run([2, 0, 1, 0], 3);
    expect(grown.dims).toEqual([4, 1, 3, 1]);
    expect(Array.from(grown.data as Float32Array)).toEqual([30, 31, 0, 10, 11, 0, 20, 21, 0, 10, 11, 0]);
    const shrunk = await run([2], 1);
    expect(shrunk.dims).toEqual([1, 1, 1, 1]);
    expect(Array.from(shrunk.data as Float32Array)).toEqual([30]);
  });
});
