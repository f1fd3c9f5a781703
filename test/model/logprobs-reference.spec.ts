// The engine's logprobs against the float64 reference Falcon: the log-softmax of the reference's logits for the same
// tokens, on the fp32 tiny model run by onnxruntime (CPU). Proves they are the model's exact distribution over the
// whole vocabulary, not probabilities renormalised over the graph's top-k.
import { GenerationEngine } from '@app/engine';
import { tinyModelDir, tinyModelReference } from '../support/tiny-model';

const PROMPT = [40, 300, 77, 120, 5, 260, 301, 88, 11, 150];
const TOP = 5;

function logSoftmax(logits: ArrayLike<number>): number[] {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - max);
  const normalizer = max + Math.log(sum);
  return Array.from(logits, (value) => value - normalizer);
}

test('logprobs of greedy and of sampled tokens equal the reference model\'s log-softmax, with its most likely tokens', async () => {
  const engine = await GenerationEngine.start({ modelDir: await tinyModelDir({ weights: 'fp32' }), executionProvider: 'cpu', slots: 2, inProcess: true });
  try {
    const reference = tinyModelReference({ weights: 'fp32' });
    const requests = [
      { id: 'greedy', params: { maxNewTokens: 6, ignoreEos: true, logprobs: TOP } },
      // Sampling at temperature 1.5 with top_p: the logprobs stay those of the model (before temperature/top-p).
      { id: 'sampled', params: { maxNewTokens: 6, ignoreEos: true, logprobs: TOP, doSample: true, temperature: 1.5, topP: 0.9, seed: 7 } },
    ];
    for (const request of requests) {
      const result = await engine.submit({ id: request.id, prompt: '', promptIds: PROMPT, params: request.params });
      const [sequence] = result.sequences;
      expect(sequence.logprobs).toHaveLength(sequence.tokens.length);
      sequence.tokens.forEach((token, step) => {
        const expected = logSoftmax(reference.logits([...PROMPT, ...sequence.tokens.slice(0, step)]));
        const entry = sequence.logprobs![step];
        expect(entry.token).toBe(token);
        expect(Math.abs(entry.logprob - expected[token])).toBeLessThan(1e-4);
        const order = expected.map((_, id) => id).sort((a, b) => expected[b] - expected[a]);
        expect(entry.top.map((alt) => alt.token)).toEqual(order.slice(0, TOP));
        entry.top.forEach((alt) => expect(Math.abs(alt.logprob - expected[alt.token])).toBeLessThan(1e-4));
      });
    }
  } finally {
    await engine.close();
  }
});

test.each(['host', 'device', 'device-merge'] as const)('prompt logprobs (teacher forcing, %s KV) equal the reference model\'s log-softmax of each prompt prefix; the first token has none', async (kvPlacement) => {
  const engine = await GenerationEngine.start({ modelDir: await tinyModelDir({ weights: 'fp32' }), executionProvider: 'cpu', slots: 3, inProcess: true, kvPlacement });
  try {
    const reference = tinyModelReference({ weights: 'fp32' });
    // Scored alone with nothing generated, and scored then generating beside a plain request in the same batch.
    const [scoredOnly, scoredThenGenerated, plain] = await Promise.all([
      engine.submit({ id: 'scored', prompt: '', promptIds: PROMPT, params: { maxNewTokens: 0, logprobs: TOP, promptLogprobs: true } }),
      engine.submit({ id: 'scored-generated', prompt: '', promptIds: PROMPT, params: { maxNewTokens: 5, ignoreEos: true, logprobs: TOP, promptLogprobs: true } }),
      engine.submit({ id: 'plain', prompt: '', promptIds: PROMPT, params: { maxNewTokens: 5, ignoreEos: true } }),
    ]);
    expect(scoredOnly.sequences[0]).toMatchObject({ tokens: [], finishReason: 'length' });
    for (const result of [scoredOnly, scoredThenGenerated]) {
      const entries = result.sequences[0].promptLogprobs!;
      expect(entries).toHaveLength(PROMPT.length);
      expect(entries[0]).toMatchObject({ token: PROMPT[0], logprob: null, top: null });
      for (let i = 1; i < PROMPT.length; i++) {
        const expected = logSoftmax(reference.logits(PROMPT.slice(0, i)));
        const entry = entries[i];
        expect(entry.token).toBe(PROMPT[i]);
        expect(Math.abs(entry.logprob! - expected[PROMPT[i]])).toBeLessThan(1e-4);
        const order = expected.map((_, id) => id).sort((a, b) => expected[b] - expected[a]);
        expect(entry.top!.map((alt) => alt.token)).toEqual(order.slice(0, TOP));
        entry.top!.forEach((alt) => expect(Math.abs(alt.logprob - expected[alt.token])).toBeLessThan(1e-4));
      }
    }
    // The prompt fed one token per step leaves the same cache as its prefill: the same greedy continuation.
    expect(scoredThenGenerated.sequences[0].tokens).toEqual(plain.sequences[0].tokens);
  } finally {
    await engine.close();
  }
});
