// The decode loop's greedy token (groupedArgmax): two TopK(k = 1) stages over vocabulary groups, run by onnxruntime
// on a one-node-chain graph, against the lowest-id argmax the one-step path takes.
import * as ort from 'onnxruntime-node';
import { groupedArgmax } from '@app/model';
import { encodeModel, TensorDataType } from '../../libs/model/src/onnx/model';

async function argmaxSession(vocab: number): Promise<ort.InferenceSession> {
  const { nodes, initializers } = groupedArgmax('logits', 'token', vocab, 'argmax');
  const model = encodeModel({
    irVersion: 10,
    producerName: 'test',
    producerVersion: '0',
    opsets: [{ domain: '', version: 21 }],
    graphName: 'argmax',
    nodes,
    initializers,
    inputs: [{ name: 'logits', elemType: TensorDataType.FLOAT, dims: ['batch', vocab] }],
    outputs: [{ name: 'token', elemType: TensorDataType.INT64, dims: ['batch'] }],
  });
  return ort.InferenceSession.create(model);
}

const lowestArgmax = (row: Float32Array) => row.reduce((best, value, i) => (value > row[best] ? i : best), 0);

describe('groupedArgmax', () => {
  it.each([
    [65024, 'the Falcon vocabulary: 32 groups of 2032'],
    [4096, '2 groups of 2048'],
    [1000, 'one group'],
  ])('gives the lowest id of the largest value (%i, %s), ties included', async (vocab) => {
    const session = await argmaxSession(vocab);
    const rows: Float32Array[] = [];
    const random = (seed: number) => () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const next = random(vocab);
    for (let r = 0; r < 4; r++) rows.push(Float32Array.from({ length: vocab }, () => Math.round(next() * 64) / 8)); // many ties
    const peak = (at: number[]) => { const row = new Float32Array(vocab).fill(-1); for (const i of at) row[i] = 3; return row; };
    rows.push(peak([vocab - 1]), peak([5, vocab - 1]), peak([Math.floor(vocab / 2) + 1, vocab - 2]), new Float32Array(vocab), new Float32Array(vocab).fill(-Infinity).map((v, i) => (i === 7 ? 0 : v)));
    const data = new Float32Array(rows.length * vocab);
    rows.forEach((row, b) => data.set(row, b * vocab));
    const out = await session.run({ logits: new ort.Tensor('float32', data, [rows.length, vocab]) });
    expect(Array.from(out.token.data as BigInt64Array, Number)).toEqual(rows.map(lowestArgmax));
    await session.release();
  });
});
