// Log-probabilities of the model's next-token distribution, for OpenAI's `logprobs` / `top_logprobs`.
//
// They are the model's own distribution: log_softmax of the raw logits over the whole vocabulary, before the
// repetition penalty, temperature, top-k and top-p reshape it for sampling (vLLM's default, "raw_logprobs").
// The normalizer (log-sum-exp over the vocabulary) needs every logit, so a row asking for logprobs is served from
// the graph's full `logits` output; the top-K outputs alone would only give probabilities relative to those K.

import type { TokenLogprob } from '../api';
import { keepLargest, type Candidates } from './candidates';

/** Most alternatives per token (OpenAI's bound). */
export const MAX_TOP_LOGPROBS = 20;

/** log(sum(exp(logits))), computed in float64 around the maximum so it neither overflows nor underflows. */
export function logSumExp(logits: ArrayLike<number>): number {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i];
  if (max === -Infinity) return -Infinity;
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - max);
  return max + Math.log(sum);
}

/**
 * The chosen token's log-probability and the `top` most likely tokens (descending, ties by lower id), from one
 * row of full logits (index = token id). `textOf` decodes one token.
 */
export function tokenLogprob(logits: ArrayLike<number>, chosen: number, top: number, textOf: (token: number) => string): TokenLogprob {
  const normalizer = logSumExp(logits);
  const entry: TokenLogprob = { token: chosen, text: textOf(chosen), logprob: logits[chosen] - normalizer, top: [] };
  if (top > 0) {
    const ids = new Int32Array(logits.length);
    for (let i = 0; i < ids.length; i++) ids[i] = i;
    const candidates: Candidates = { ids, logits: Float32Array.from(logits), sorted: false, wholeVocab: true };
    keepLargest(candidates, Math.min(top, logits.length));
    for (let i = 0; i < candidates.ids.length; i++) {
      const token = candidates.ids[i];
      entry.top.push({ token, text: textOf(token), logprob: logits[token] - normalizer });
    }
  }
  return entry;
}
