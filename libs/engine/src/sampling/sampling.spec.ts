import { resolveGenerationParams } from '../params';
import { applyRepetitionPenalty, applyTopK, applyTopP, candidatesFrom, drawFrom, softmax } from './candidates';
import { SequenceRandom } from './prng';
import { needsFullLogits, TokenSampler } from './sampler';

describe('logits processors', () => {
  it('repetition penalty divides positive and multiplies negative logits of seen tokens', () => {
    const candidates = candidatesFrom({ kind: 'full', logits: [2, -2, 1] });
    applyRepetitionPenalty(candidates, 2, new Set([0, 1]));
    expect(Array.from(candidates.logits)).toEqual([1, -4, 1]);
  });

  it('repetition penalty refuses a top-K window', () => {
    const candidates = candidatesFrom({ kind: 'top', ids: [3], logits: [1] });
    expect(() => applyRepetitionPenalty(candidates, 1.2, new Set([3]))).toThrow(/full logits/);
  });

  it('top-k keeps the k largest, top-p the smallest head reaching the mass', () => {
    const candidates = candidatesFrom({ kind: 'full', logits: [0, 3, 1, 2] });
    applyTopK(candidates, 3);
    expect(Array.from(candidates.ids)).toEqual([1, 3, 2]);
    applyTopP(candidates, 0.6);
    // softmax([3,2,1]) = [0.665, 0.245, 0.090]: the first alone reaches 0.6
    expect(Array.from(candidates.ids)).toEqual([1]);
  });

  it('draws by cumulative probability', () => {
    const candidates = candidatesFrom({ kind: 'top', ids: [7, 9], logits: [0, 0] });
    expect(drawFrom(candidates, 0.49)).toBe(7);
    expect(drawFrom(candidates, 0.51)).toBe(9);
  });
});

describe('needsFullLogits', () => {
  it.each([
    [{}, false],
    [{ doSample: true, topK: 50 }, false],
    [{ doSample: true, topK: 50, topP: 0.9, temperature: 0.5 }, false],
    [{ doSample: true }, true],
    [{ doSample: true, topP: 0.9 }, true],
    [{ doSample: true, topK: 65 }, true],
    [{ repetitionPenalty: 1.1 }, true],
  ])('%j -> %s', (given, expected) => {
    expect(needsFullLogits(resolveGenerationParams(given), 64)).toBe(expected);
  });
});

describe('TokenSampler', () => {
  const scores = { kind: 'top' as const, ids: [5, 6, 7, 8], logits: [1, 0.9, 0.8, 0.7] };

  it('greedy takes the argmax', () => {
    expect(new TokenSampler(resolveGenerationParams({}), 1, 0).next(scores, new Set())).toBe(5);
  });

  it('the same seed and sequence index draw the same tokens; another index draws others', () => {
    const params = resolveGenerationParams({ doSample: true, topK: 4 });
    const draw = (seed: number, index: number) => {
      const sampler = new TokenSampler(params, seed, index);
      return Array.from({ length: 32 }, () => sampler.next(scores, new Set()));
    };
    expect(draw(42, 0)).toEqual(draw(42, 0));
    expect(draw(42, 0)).not.toEqual(draw(42, 1));
    expect(new Set(draw(42, 0)).size).toBeGreaterThan(1);
  });

  it('random streams are uniform enough', () => {
    const random = new SequenceRandom(7, 0);
    let sum = 0;
    for (let i = 0; i < 10000; i++) sum += random.next();
    expect(sum / 10000).toBeGreaterThan(0.48);
    expect(sum / 10000).toBeLessThan(0.52);
  });
});

describe('top-k and top-p over a whole vocabulary (selection instead of a full sort)', () => {
  /** The plain definition: sort everything, cut. */
  function reference(logits: Float32Array, topK: number, topP: number): number[] {
    const order = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a] || a - b);
    let kept = topK > 0 ? order.slice(0, topK) : order;
    if (topP < 1) {
      const probabilities = softmax(kept.map((i) => logits[i]));
      let mass = 0;
      let keep = 0;
      while (keep < kept.length && mass < topP) mass += probabilities[keep++];
      kept = kept.slice(0, keep);
    }
    return kept;
  }

  it.each([
    [0, 0.9, 1],
    [0, 0.5, 2],
    [0, 0.999, 3],
    [300, 1, 4],
    [1000, 0.95, 5],
    [40, 0.8, 6],
  ])('top_k %d, top_p %d (seed %d) keeps the same tokens in the same order', (topK, topP, seed) => {
    const random = new SequenceRandom(seed, 0);
    // Peaked like a language model: a few large logits over many small ones, plus exact ties.
    const logits = Float32Array.from({ length: 20_000 }, (_, i) => (i % 997 === 0 ? 3 : 0) + 8 * random.next() ** 6 - 2);
    logits[17] = logits[18];
    const candidates = candidatesFrom({ kind: 'full', logits });
    applyTopK(candidates, topK);
    applyTopP(candidates, topP);
    expect(Array.from(candidates.ids)).toEqual(reference(logits, topK, topP));
  });

  it('a flat distribution widens the selection until the mass is reached', () => {
    const logits = new Float32Array(5000).fill(1);
    const candidates = candidatesFrom({ kind: 'full', logits });
    applyTopP(candidates, 0.5);
    expect(candidates.ids.length).toBeGreaterThan(1024); // past the first two widenings
    expect(Array.from(candidates.ids)).toEqual(reference(logits, 0, 0.5));
  });
});
