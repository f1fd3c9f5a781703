import { logSumExp, tokenLogprob } from './logprobs';

const textOf = (token: number) => `t${token}`;

describe('logSumExp', () => {
  it('matches the direct formula where it is safe, and neither overflows nor underflows where it is not', () => {
    const small = [0.5, -1, 2, 0];
    expect(logSumExp(small)).toBeCloseTo(Math.log(small.reduce((sum, x) => sum + Math.exp(x), 0)), 12);
    expect(logSumExp([1000, 1000])).toBeCloseTo(1000 + Math.log(2), 9);
    expect(logSumExp([-1000, -1000])).toBeCloseTo(-1000 + Math.log(2), 9);
    expect(logSumExp([-Infinity, 0])).toBe(0);
  });
});

describe('tokenLogprob', () => {
  const logits = Float32Array.from([1, 3, 3, -2, 0.5]);

  it('gives log-probabilities that exponentiate to a distribution over the whole vocabulary', () => {
    const all = tokenLogprob(logits, 0, logits.length, textOf);
    expect(all.top.reduce((sum, alt) => sum + Math.exp(alt.logprob), 0)).toBeCloseTo(1, 9);
    expect(all.logprob).toBeCloseTo(1 - logSumExp(logits), 9);
  });

  it('lists the top alternatives by likelihood, ties by the lower id, with their text', () => {
    const entry = tokenLogprob(logits, 3, 3, textOf);
    expect(entry).toMatchObject({ token: 3, text: 't3' });
    expect(entry.top.map((alt) => [alt.token, alt.text])).toEqual([[1, 't1'], [2, 't2'], [0, 't0']]);
    expect(tokenLogprob(logits, 3, 0, textOf).top).toEqual([]);
  });
});
