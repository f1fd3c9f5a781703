import type { GenerationParams } from '../api';
import {
  applyRepetitionPenalty,
  applyTemperature,
  applyTopK,
  applyTopP,
  argmax,
  candidatesFrom,
  drawFrom,
  type RowScores,
} from './candidates';
import { SequenceRandom } from './prng';

/**
 * Whether a row with these parameters needs the model's full logits, or can be served exactly from the graph's
 * top-K outputs (K = io.topK):
 * - greedy: argmax = top_ids[0], exact;
 * - sampling with 0 < top_k <= K: top-k keeps only those K candidates anyway, and top_p/temperature act on them
 *   (transformers applies top-p after top-k), exact;
 * - sampling without top_k (or top_k > K), with or without top_p: the distribution spans the vocabulary: full;
 * - repetition_penalty != 1: a penalised token can leave the top-K and another enter it: full;
 * - logprobs: their normalizer sums over the whole vocabulary: full.
 */
export function needsFullLogits(params: GenerationParams, graphTopK: number): boolean {
  if (params.repetitionPenalty !== 1 || params.logprobs !== undefined) return true;
  if (!params.doSample) return false;
  return params.topK === 0 || params.topK > graphTopK;
}

/**
 * Whether the decode-loop graph's sampler picks exactly what TokenSampler would for these parameters: greedy (with
 * or without a repetition penalty, it sees the full logits), or sampling within its `candidates` top tokens. A row
 * asking for logprobs does not fit: their normalizer needs the full logits of every step, which the loop keeps inside.
 */
export function fitsInGraphSampler(params: GenerationParams, candidates: number): boolean {
  if (params.logprobs !== undefined) return false;
  return !params.doSample || (params.topK >= 1 && params.topK <= candidates);
}

/**
 * How the decode-loop graph picks one row's tokens (libs/model's in-graph sampler, mirroring TokenSampler); made by
 * TokenSampler.loopSampling.
 */
export interface RowSampling {
  doSample: boolean;
  temperature: number;
  /** 1..chunkCandidates (greedy rows: 1). */
  topK: number;
  topP: number;
  repetitionPenalty: number;
  /** One uniform per step, in order (greedy rows: ignored). */
  uniforms: ArrayLike<number>;
  /** Prompt and generated ids (read only when repetitionPenalty is not 1). */
  seen: ReadonlySet<number>;
}

/** Picks the next token of one sequence. Stateless apart from its random stream. */
export class TokenSampler {
  private readonly random: SequenceRandom;

  constructor(
    private readonly params: GenerationParams,
    seed: number,
    sequenceIndex: number,
  ) {
    this.random = new SequenceRandom(seed, sequenceIndex);
  }

  /** Greedy without a repetition penalty: the next token is the top one, whatever else the scores hold. */
  get greedy(): boolean {
    return !this.params.doSample && this.params.repetitionPenalty === 1;
  }

  /**
   * The same choice for the next `steps` tokens, made by the decode-loop graph: the parameters and the uniforms
   * next() would draw, in order (so the sequence's random stream is the same whichever path decodes it).
   */
  loopSampling(steps: number, seen: ReadonlySet<number>): RowSampling {
    const { doSample, temperature, topK, topP, repetitionPenalty } = this.params;
    const uniforms = new Float64Array(doSample ? steps : 0);
    for (let i = 0; i < uniforms.length; i++) uniforms[i] = this.random.next();
    return { doSample, temperature, topK, topP, repetitionPenalty, uniforms, seen };
  }

  /** `seen`: prompt and generated ids (for the repetition penalty). */
  next(scores: RowScores, seen: ReadonlySet<number>): number {
    const candidates = candidatesFrom(scores);
    applyRepetitionPenalty(candidates, this.params.repetitionPenalty, seen);
    if (!this.params.doSample) return argmax(candidates);
    applyTemperature(candidates, this.params.temperature);
    applyTopK(candidates, this.params.topK);
    applyTopP(candidates, this.params.topP);
    return drawFrom(candidates, this.random.next());
  }
}
