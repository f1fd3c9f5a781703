// The decode loop's token choice over vocabulary groups (groupedTopK, groupedArgmax), run by onnxruntime on a graph of
// just those nodes, against what the one-step path takes: the lowest id of the largest logit, and the k largest
// logits in descending order with the lower id first among equal ones.
import * as ort from 'onnxruntime-node';
import { groupedArgmax, groupedTopK } from '@app/model';
import { encodeModel, type NodeSpec, type InitializerSpec, TensorDataType, type ValueInfoSpec } from '../../libs/model/src/onnx/model';

function session(built: { nodes: NodeSpec[]; initializers: InitializerSpec[] }, vocab: number, outputs: ValueInfoSpec[]): Promise<ort.InferenceSession> {
  const model = encodeModel({
    irVersion: 10,
    producerName: 'test',
    producerVersion: '0',
    opsets: [{ domain: '', version: 21 }],
    graphName: 'grouped',
    nodes: built.nodes,
    initializers: built.initializers,
    inputs: [{ name: 'logits', elemType: TensorDataType.FLOAT, dims: ['batch', vocab] }],
    outputs,
  });
  return ort.InferenceSession.create(model);
}

/** Rows with many ties (random multiples of 1/8), peaks in different groups, an all-equal row, a -inf row. */
function testRows(vocab: number): Float32Array[] {
  let seed = vocab;
  const next = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const rows = Array.from({ length: 4 }, () => Float32Array.from({ length: vocab }, () => Math.round(next() * 64) / 8));
  const peaks = (at: number[]) => {
    const row = new Float32Array(vocab).fill(-1);
    for (const i of at) row[i] = 3;
    return row;
  };
  rows.push(peaks([vocab - 1]), peaks([5, vocab - 1]), peaks([Math.floor(vocab / 2) + 1, vocab - 2]), new Float32Array(vocab));
  rows.push(new Float32Array(vocab).fill(-Infinity).map((value, i) => (i === 7 ? 0 : value)));
  return rows;
}

const batchOf = (rows: Float32Array[]) => {
  const vocab = rows[0].length;
  const data = new Float32Array(rows.length * vocab);
  rows.forEach((row, b) => data.set(row, b * vocab));
  return new ort.Tensor('float32', data, [rows.length, vocab]);
};

/** The k largest (value descending, then id ascending). */
const reference = (row: Float32Array, k: number) => Array.from(row.keys()).sort((a, b) => row[b] - row[a] || a - b).slice(0, k);

describe('the decode loop\'s grouped token choice', () => {
  const vocabs: [number, string][] = [[65024, 'the Falcon vocabulary: 32 groups of 2032'], [4096, '2 groups of 2048'], [1000, 'one group']];

  it.each(vocabs)('groupedArgmax gives the lowest id of the largest logit (%i, %s)', async (vocab) => {
    const rows = testRows(vocab);
    const argmax = await session(groupedArgmax('logits', 'token', vocab, 'argmax'), vocab, [{ name: 'token', elemType: TensorDataType.INT64, dims: ['batch'] }]);
    const out = await argmax.run({ logits: batchOf(rows) });
    expect(Array.from(out.token.data as BigInt64Array, Number)).toEqual(rows.map((row) => reference(row, 1)[0]));
    await argmax.release();
  });

  it.each(vocabs)('groupedTopK gives the 64 largest in order, lower ids first on ties (%i, %s)', async (vocab) => {
    const k = 64;
    const rows = testRows(vocab);
    const topK = await session(groupedTopK('logits', 'values', 'ids', vocab, k, 'top'), vocab, [
      { name: 'values', elemType: TensorDataType.FLOAT, dims: ['batch', k] },
      { name: 'ids', elemType: TensorDataType.INT64, dims: ['batch', k] },
    ]);
    const out = await topK.run({ logits: batchOf(rows) });
    const ids = Array.from(out.ids.data as BigInt64Array, Number);
    const values = Array.from(out.values.data as Float32Array);
    rows.forEach((row, b) => {
      const expected = reference(row, k);
      expect(ids.slice(b * k, (b + 1) * k)).toEqual(expected);
      expect(values.slice(b * k, (b + 1) * k)).toEqual(expected.map((id) => row[id]));
    });
    await topK.release();
  });
});
