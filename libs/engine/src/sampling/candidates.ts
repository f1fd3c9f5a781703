// The token candidates of one row for one step, and the logits processors that reshape them (in Hugging Face's
// order: repetition penalty, then temperature, top-k, top-p).

/** Next-token scores of one row as the model returned them. */
export type RowScores =
  /** The graph's top_ids/top_logits outputs: the K largest logits, descending. */
  | { kind: 'top'; ids: ArrayLike<number>; logits: ArrayLike<number> }
  /** The full logits row (vocab entries). */
  | { kind: 'full'; logits: ArrayLike<number> };

export interface Candidates {
  ids: Int32Array;
  logits: Float32Array;
  /** ids[0..length) are in descending logit order. */
  sorted: boolean;
  /** The candidates are the whole vocabulary (ids[i] === i); false for the top-K outputs. */
  wholeVocab: boolean;
}

export function candidatesFrom(scores: RowScores): Candidates {
  if (scores.kind === 'top') {
    return {
      ids: Int32Array.from(scores.ids, Number),
      logits: Float32Array.from(scores.logits),
      sorted: true,
      wholeVocab: false,
    };
  }
  const ids = new Int32Array(scores.logits.length);
  for (let i = 0; i < ids.length; i++) ids[i] = i;
  return { ids, logits: Float32Array.from(scores.logits), sorted: false, wholeVocab: true };
}

/**
 * CTRL-style repetition penalty as in transformers: a logit of a token already seen (prompt or generated) is divided
 * by the penalty when positive, multiplied when negative. Needs the whole vocabulary (a penalised token can fall
 * out of, and an unpenalised one climb into, any top-K window).
 */
export function applyRepetitionPenalty(candidates: Candidates, penalty: number, seen: ReadonlySet<number>): void {
  if (penalty === 1) return;
  if (!candidates.wholeVocab) throw new Error('repetition penalty needs the full logits row');
  const { logits } = candidates;
  for (const id of seen) {
    if (id < 0 || id >= logits.length) continue;
    const value = logits[id];
    logits[id] = value < 0 ? value * penalty : value / penalty;
  }
  candidates.sorted = false;
}

export function applyTemperature(candidates: Candidates, temperature: number): void {
  if (temperature === 1) return;
  const { logits } = candidates;
  for (let i = 0; i < logits.length; i++) logits[i] /= temperature;
}

/** Sorts descending by logit, ties by id, so the order is a pure function of the values. */
export function sortDescending(candidates: Candidates): void {
  if (candidates.sorted) return;
  const order = Array.from(candidates.ids.keys());
  const { ids, logits } = candidates;
  order.sort((a, b) => logits[b] - logits[a] || ids[a] - ids[b]);
  candidates.ids = Int32Array.from(order, (i) => ids[i]);
  candidates.logits = Float32Array.from(order, (i) => logits[i]);
  candidates.sorted = true;
  candidates.wholeVocab = false;
}

export function applyTopK(candidates: Candidates, topK: number): void {
  if (topK <= 0 || topK >= candidates.ids.length) return;
  if (candidates.sorted) {
    candidates.ids = candidates.ids.slice(0, topK);
    candidates.logits = candidates.logits.slice(0, topK);
    return;
  }
  keepLargest(candidates, topK);
}

/** Nucleus filter: keeps the smallest head of the sorted candidates whose probability mass reaches topP. */
export function applyTopP(candidates: Candidates, topP: number): void {
  if (topP >= 1) return;
  if (!candidates.sorted) {
    applyTopPUnsorted(candidates, topP);
    return;
  }
  const probabilities = softmax(candidates.logits);
  let mass = 0;
  let keep = 0;
  while (keep < probabilities.length) {
    mass += probabilities[keep];
    keep += 1;
    if (mass >= topP) break;
  }
  candidates.ids = candidates.ids.slice(0, keep);
  candidates.logits = candidates.logits.slice(0, keep);
}

/**
 * top-p over a whole vocabulary without sorting it: the nucleus is almost always a few hundred tokens, so sort the
 * largest 256 (linear selection), and widen (x4) only when their mass falls short. Same set and order as a full sort.
 */
function applyTopPUnsorted(candidates: Candidates, topP: number): void {
  const { logits } = candidates;
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i];
  let total = 0;
  for (let i = 0; i < logits.length; i++) total += Math.exp(logits[i] - max);
  for (let width = Math.min(256, logits.length); ; width = Math.min(logits.length, width * 4)) {
    const head = { ...candidates };
    keepLargest(head, width);
    let mass = 0;
    let keep = 0;
    while (keep < head.ids.length && mass < topP) {
      mass += Math.exp(head.logits[keep] - max) / total;
      keep += 1;
    }
    if (mass >= topP || width === logits.length) {
      candidates.ids = head.ids.slice(0, keep);
      candidates.logits = head.logits.slice(0, keep);
      candidates.sorted = true;
      candidates.wholeVocab = false;
      return;
    }
  }
}

/** Keeps the `count` largest candidates (ties by lower id), sorted: a linear selection, then a sort of `count`. */
export function keepLargest(candidates: Candidates, count: number): void {
  const { ids, logits } = candidates;
  if (count >= ids.length) {
    sortDescending(candidates);
    return;
  }
  const threshold = kthLargest(logits, count);
  const picked: number[] = [];
  for (let i = 0; i < logits.length; i++) if (logits[i] >= threshold) picked.push(i);
  picked.sort((a, b) => logits[b] - logits[a] || ids[a] - ids[b]);
  picked.length = count;
  candidates.ids = Int32Array.from(picked, (i) => ids[i]);
  candidates.logits = Float32Array.from(picked, (i) => logits[i]);
  candidates.sorted = true;
  candidates.wholeVocab = false;
}

/** The k-th largest value (k >= 1), by quickselect on a copy. */
function kthLargest(values: Float32Array, k: number): number {
  const a = Float32Array.from(values);
  const target = k - 1;
  let lo = 0;
  let hi = a.length - 1;
  while (lo < hi) {
    const pivot = a[(lo + hi) >> 1];
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i] > pivot) i++;
      while (a[j] < pivot) j--;
      if (i <= j) {
        const swap = a[i];
        a[i] = a[j];
        a[j] = swap;
        i++;
        j--;
      }
    }
    if (target <= j) hi = j;
    else if (target >= i) lo = i;
    else return a[target];
  }
  return a[target];
}

export function softmax(logits: ArrayLike<number>): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i];
  const out = new Float64Array(logits.length);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) {
    out[i] = Math.exp(logits[i] - max);
    sum += out[i];
  }
  for (let i = 0; i < out.length; i++) out[i] /= sum;
  return out;
}

/** Highest logit, lowest id on ties. */
export function argmax(candidates: Candidates): number {
  const { ids, logits } = candidates;
  let best = 0;
  for (let i = 1; i < ids.length; i++) {
    if (logits[i] > logits[best] || (logits[i] === logits[best] && ids[i] < ids[best])) best = i;
  }
  return ids[best];
}

/** Draws one id from softmax(logits) with a uniform number u in [0, 1). */
export function drawFrom(candidates: Candidates, uniform: number): number {
  const probabilities = softmax(candidates.logits);
  let remaining = uniform;
  for (let i = 0; i < probabilities.length; i++) {
    remaining -= probabilities[i];
    if (remaining < 0) return candidates.ids[i];
  }
  return candidates.ids[probabilities.length - 1];
}
