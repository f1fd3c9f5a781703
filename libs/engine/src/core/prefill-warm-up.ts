// Prefill warm-up (EngineOptions.prefillWarmUp): the large prefill shapes run once at load, so the one-time costs
// of their first run fall before serving instead of on the decoding rows of a live batch.

import type { SwitchChoice } from '../api';
import type { ForwardRunner } from '../scheduler/forward-runner';

/**
 * onnxruntime's fpA_intB GEMM profiles its kernel tactics at load for up to this many rows of tokens (M); a larger
 * M is profiled on its first run, once per power-of-two bucket (contrib_ops/cuda/llm/fpA_intB_gemm_profiler).
 */
export const TOKENS_PROFILED_AT_LOAD = 2048;

/** EngineOptions.prefillWarmUp: 'auto' warms up where a first run is known to pay for tactic profiling (the fpA_intB GEMM). */
export function warmsUpPrefill(choice: SwitchChoice | undefined, cudaFpaIntbGemm: boolean): boolean {
  return choice === 'on' || ((choice ?? 'auto') === 'auto' && cudaFpaIntbGemm);
}

export interface PrefillShape {
  rows: number;
  /** Tokens per row: every row is padded to it, so the run has rows x length tokens. */
  length: number;
}

/**
 * One shape per power-of-two bucket of tokens in a run above TOKENS_PROFILED_AT_LOAD, up to the bucket holding
 * prefillChunkTokens: as many rows as the slots allow, the tokens of each row no more than the context, and the run's
 * token count inside the bucket (above half of it). Buckets no shape can reach within the budget are skipped.
 */
export function prefillWarmUpShapes(slots: number, prefillChunkTokens: number, contextLength: number): PrefillShape[] {
  const shapes: PrefillShape[] = [];
  for (let bucket = 2 * TOKENS_PROFILED_AT_LOAD; bucket / 2 < prefillChunkTokens; bucket *= 2) {
    const tokens = Math.min(bucket, prefillChunkTokens);
    const length = Math.min(contextLength, Math.max(1, Math.floor(tokens / slots)));
    const rows = Math.min(slots, Math.floor(tokens / length));
    if (rows * length > bucket / 2) shapes.push({ rows, length });
  }
  return shapes;
}

/**
 * Prefills rows 0..rows-1 with `token` repeated for each shape, then releases them: the runner is left as it was
 * found (no live row). A run that fails is reported with its shape.
 */
export async function warmUpPrefill(runner: ForwardRunner, shapes: readonly PrefillShape[], token: number): Promise<void> {
  for (const { rows, length } of shapes) {
    const entries = Array.from({ length: rows }, (_, row) => ({ row, tokens: new Array<number>(length).fill(token), maxLength: length + 1 }));
    try {
      await runner.prefill(entries, false);
    } catch (error) {
      throw new Error(`prefill warm-up of ${rows} rows x ${length} tokens failed (${(error as Error).message}); lower prefillChunkTokens or slots, or turn prefillWarmUp off`);
    } finally {
      for (const entry of entries) runner.release(entry.row);
    }
  }
}
