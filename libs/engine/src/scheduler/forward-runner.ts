// What the scheduler needs from a model: runs over rows of a KV cache. Implemented over onnxruntime by
// runtime/host-kv-runner.ts (KV in host memory) and runtime/device-kv-runner.ts (KV in GPU buffers), and by a fake
// in the scheduler's unit tests.

import type { RowSampling } from '../sampling/sampler';

/** How the decode-loop graph picks one row's tokens (its owner is the sampler, whose choice it mirrors). */
export type { RowSampling };

export interface TopScores {
  ids: ArrayLike<number>;
  logits: ArrayLike<number>;
}

/** Next-token scores of one row: always the graph's top-K, plus the full logits row when asked for. */
export interface RowOutput {
  top: TopScores;
  /** The top token (largest logit, lowest id on ties), when a runner has it cheaper than `top` (greedy rows). */
  best?: number;
  full?: ArrayLike<number>;
}

export interface RowTokens {
  row: number;
  tokens: number[];
  /** The most tokens the row will hold (prompt + max new tokens), for runners that size their cache to it. */
  maxLength?: number;
}

export interface RowToken {
  row: number;
  token: number;
}


export interface ChunkEntry extends RowToken {
  sampling: RowSampling;
}

/**
 * host: KV in host memory. device: KV in opaque (GPU) buffers, joins through decode. device-merge: KV in opaque
 * buffers, newcomers prefilled in their own run and scattered into the cache by a small merge graph.
 */
export type KvPlacement = 'host' | 'device' | 'device-merge';

/**
 * prefill: fresh rows can be prefilled while others are decoding and long prompts are extended chunk by chunk
 * (B = 1). decode: prefill only starts a new batch (no live row); a row joining a running batch is fed its prompt
 * through decode, one token per step.
 */
export type JoinMode = 'prefill' | 'decode';

export interface ForwardRunner {
  readonly placement: KvPlacement;
  readonly joinMode: JoinMode;
  /** Rows the cache holds (the engine's slots). */
  readonly rows: number;
  /** K of the graph's top_ids/top_logits outputs. */
  readonly graphTopK: number;
  /** Tokens each row can hold: the model's context, or the smaller bound the runner was created with (maxSequenceLength). */
  readonly contextLength: number;

  /** Starts each listed row from position 0 with its tokens, in one right-padded run. */
  prefill(entries: RowTokens[], fullLogits: boolean): Promise<RowOutput[]>;
  /** joinMode prefill only: appends several tokens to a row being prefilled (a prompt chunk; B = 1). */
  extend(entry: RowTokens, fullLogits: boolean): Promise<RowOutput>;
  /** Appends one token to each listed row. joinMode decode: a released row restarts at position 0. */
  decode(entries: RowToken[], fullLogits: boolean): Promise<RowOutput[]>;
  /**
   * Decode-loop runners: the most top candidates the in-graph sampler draws from (rows sampling with a larger or no
   * top_k decode one step at a time); absent when the runner cannot decode several steps per run.
   */
  readonly chunkCandidates?: number;
  /**
   * Decode-loop runners: appends `steps` tokens to each listed row in one run, each chosen in the graph by the row's
   * sampling; returns them per entry, in order. The last token is not yet in the cache (it is the next step's input),
   * as with decode(). Rows that finish part-way simply ignore the rest.
   */
  decodeChunk?(entries: ChunkEntry[], steps: number): Promise<number[][]>;
  /** The row's sequence has ended; its KV may be dropped or its row reused. Never called while a run is in flight. */
  release(row: number): void;
  /** Frees native resources. */
  dispose(): void;
}
