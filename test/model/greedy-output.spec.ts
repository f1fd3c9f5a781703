import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import type { ModelManifest } from '@app/model';
import { tinyModelDir } from '../support/tiny-model';

// The greedy_ids output is what the engine fetches for greedy rows instead of the top-k or the full logits.
test('greedy_ids is the ArgMax of each row\'s last-token logits, for a right-padded batch', async () => {
  const dir = await tinyModelDir({ weights: 'fp32' });
  const manifest = (await import(path.join(dir, 'falconq.json'))) as ModelManifest;
  const session = await ort.InferenceSession.create(path.join(dir, manifest.files.model));
  const { numLayers, numKvHeads, headDim } = manifest.shape;
  const prompts = [[40, 300, 77, 120, 5], [61, 62]];
  const width = 5;
  const ids = new BigInt64Array(prompts.length * width).fill(BigInt(manifest.tokens.pad));
  const mask = new BigInt64Array(prompts.length * width);
  prompts.forEach((prompt, row) => prompt.forEach((token, i) => {
    ids[row * width + i] = BigInt(token);
    mask[row * width + i] = 1n;
  }));
  const feeds: Record<string, ort.Tensor> = {
    [manifest.io.inputIds]: new ort.Tensor('int64', ids, [prompts.length, width]),
    [manifest.io.attentionMask]: new ort.Tensor('int64', mask, [prompts.length, width]),
  };
  const emptyPast = new ort.Tensor('float32', new Float32Array(0), [prompts.length, numKvHeads, 0, headDim]);
  for (let layer = 0; layer < numLayers; layer++) {
    feeds[manifest.io.pastKey.replace('%d', String(layer))] = emptyPast;
    feeds[manifest.io.pastValue.replace('%d', String(layer))] = emptyPast;
  }
  const out = await session.run(feeds, [manifest.io.logits, manifest.io.greedyIds]);
  const logits = out[manifest.io.logits].data as Float32Array;
  const greedy = Array.from(out[manifest.io.greedyIds].data as BigInt64Array, Number);
  const vocab = manifest.shape.vocabSize;
  const argmax = prompts.map((_, row) => {
    const rowLogits = logits.subarray(row * vocab, (row + 1) * vocab);
    return rowLogits.indexOf(Math.max(...rowLogits));
  });
  expect(out[manifest.io.greedyIds].dims).toEqual([prompts.length]);
  expect(greedy).toEqual(argmax);
  await session.release();
});
