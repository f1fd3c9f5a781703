// Building the graph's inputs and reading its outputs (shared by both KV strategies).

import * as ort from 'onnxruntime-node';
import type { ModelManifest } from '@app/model';
import type { RowOutput, TopScores } from '../scheduler/forward-runner';

export type KvArray = Float32Array | Uint16Array;

export interface KvLayout {
  type: 'float32' | 'float16';
  kvHeads: number;
  headDim: number;
  layers: number;
  allocate(elements: number): KvArray;
}

export function kvLayoutOf(manifest: ModelManifest): KvLayout {
  const fp16 = manifest.kvDType === 'fp16';
  return {
    type: fp16 ? 'float16' : 'float32',
    kvHeads: manifest.shape.numKvHeads,
    headDim: manifest.shape.headDim,
    layers: manifest.shape.numLayers,
    // float16 tensors take their bits as a Uint16Array in onnxruntime-node 1.30.
    allocate: (elements) => (fp16 ? new Uint16Array(elements) : new Float32Array(elements)),
  };
}

/** input_ids [B,S] right-padded and attention_mask [B,T] with ones for each row's first `lengths[b]` positions. */
export function idsTensor(rows: number[][], pad: number): ort.Tensor {
  const width = Math.max(...rows.map((row) => row.length));
  const data = new BigInt64Array(rows.length * width).fill(BigInt(pad));
  rows.forEach((row, b) => row.forEach((id, s) => (data[b * width + s] = BigInt(id))));
  return new ort.Tensor('int64', data, [rows.length, width]);
}

export function maskTensor(lengths: ArrayLike<number>, width: number): ort.Tensor {
  const data = new BigInt64Array(lengths.length * width);
  for (let b = 0; b < lengths.length; b++) data.fill(1n, b * width, b * width + lengths[b]);
  return new ort.Tensor('int64', data, [lengths.length, width]);
}

export interface OutputNames {
  topIds: string;
  topLogits: string;
  logits: string;
}

function outputNamesOf(manifest: ModelManifest): OutputNames {
  return { topIds: manifest.io.topIds, topLogits: manifest.io.topLogits, logits: manifest.io.logits };
}

/** What every runner reads from the manifest: KV layout, output names, top-K width, vocabulary, pad id. */
export interface GraphFacts {
  layout: KvLayout;
  outputs: OutputNames;
  topK: number;
  /** The top outputs hold topK candidates per vocabulary group (manifest io.topGroups). */
  topGroups: number;
  vocab: number;
  pad: number;
}

export function graphFactsOf(manifest: ModelManifest): GraphFacts {
  return {
    layout: kvLayoutOf(manifest),
    outputs: outputNamesOf(manifest),
    topK: manifest.io.topK,
    topGroups: manifest.io.topGroups ?? 1,
    vocab: manifest.shape.vocabSize,
    pad: manifest.tokens.pad,
  };
}

/** Per-row scores from a run's outputs, for batch indices `indices` (in that order). */
export function rowOutputs(results: ort.InferenceSession.OnnxValueMapType, graph: GraphFacts, indices: number[]): RowOutput[] {
  const { outputs: names, vocab, topK: k, topGroups: groups } = graph;
  const topIds = results[names.topIds].data as BigInt64Array;
  const topLogits = results[names.topLogits].data as Float32Array;
  const logits = results[names.logits] ? (results[names.logits].data as Float32Array) : undefined;
  const groupWidth = vocab / groups;
  return indices.map((b) => {
    let merged: TopScores | undefined;
    const output: RowOutput = {
      // Merged on first use: greedy rows only need `best`, and the merge costs 64 x groups comparisons per row.
      get top() {
        return (merged ??= mergeTopGroups(topIds, topLogits, b, k, groups, groupWidth));
      },
      best: bestOfGroups(topIds, topLogits, b, k, groups, groupWidth),
    };
    if (logits) output.full = logits.subarray(b * vocab, (b + 1) * vocab);
    return output;
  });
}

/** Row b's top token: the largest of the groups' first candidates (the earlier group, i.e. the lower id, on ties). */
export function bestOfGroups(ids: BigInt64Array, logits: Float32Array, b: number, k: number, groups: number, groupWidth: number): number {
  const rowStart = b * groups * k;
  let best = 0;
  for (let g = 1; g < groups; g++) if (logits[rowStart + g * k] > logits[rowStart + best * k]) best = g;
  return best * groupWidth + Number(ids[rowStart + best * k]);
}

/**
 * Row b's k largest logits, descending (ties: lower id first), from `groups` sorted runs of k candidates whose ids
 * are relative to their group (group g starts at g * groupWidth): a k-way merge, k x groups comparisons.
 */
export function mergeTopGroups(ids: BigInt64Array, logits: Float32Array, b: number, k: number, groups: number, groupWidth: number): { ids: number[]; logits: Float32Array } {
  const rowStart = b * groups * k;
  const mergedIds = new Array<number>(k);
  const mergedLogits = new Float32Array(k);
  if (groups === 1) {
    for (let j = 0; j < k; j++) mergedIds[j] = Number(ids[rowStart + j]);
    mergedLogits.set(logits.subarray(rowStart, rowStart + k));
    return { ids: mergedIds, logits: mergedLogits };
  }
  const next = new Int32Array(groups);
  for (let j = 0; j < k; j++) {
    let best = -1;
    let bestValue = -Infinity;
    for (let g = 0; g < groups; g++) {
      if (next[g] >= k) continue;
      const value = logits[rowStart + g * k + next[g]];
      // Groups are in id order, so on a tie the earlier group holds the lower id.
      if (best < 0 || value > bestValue) {
        best = g;
        bestValue = value;
      }
    }
    const at = rowStart + best * k + next[best];
    mergedIds[j] = best * groupWidth + Number(ids[at]);
    mergedLogits[j] = bestValue;
    next[best] += 1;
  }
  return { ids: mergedIds, logits: mergedLogits };
}

export function fetchNames(names: OutputNames, fullLogits: boolean, presents: string[]): string[] {
  return [names.topIds, names.topLogits, ...(fullLogits ? [names.logits] : []), ...presents];
}
