// The output processor: what becomes of a row's raw run result. Per sequence it chooses the next token from the
// run's scores (host sampler), or takes the tokens the decode-loop graph chose; applies the stop criteria (eos, stop
// strings, max tokens); streams each token's text and hands the finished request its result. It never calls the
// runner: rows, slots and the cache are the scheduler's.
//
// Prompt log-probabilities (params.promptLogprobs, "teacher forcing"): the model's graph gives the logits of a row's
// last position only, so a sequence that scores its prompt is prefilled with the prompt's first token and fed the rest
// one per decode step: each step's "next token" is forced to the prompt's next token, and that token's
// log-probability (with the top alternatives) is taken from the step's full logits exactly as a generated token's
// is (tokenLogprob). Once the prompt is in, the sequence generates as any other. One model step per prompt token.

import type { GenerationParams, GenerationResult, PromptTokenLogprob, TokenEvent, TokenLogprob } from '../api';
import type { RowScores } from '../sampling/candidates';
import { tokenLogprob } from '../sampling/logprobs';
import { fitsInGraphSampler, needsFullLogits, TokenSampler } from '../sampling/sampler';
import { SequenceStopper, type TextDecoder } from '../stopping';
import type { RowOutput, RowSampling } from './forward-runner';

export interface ScheduledRequest {
  id: string;
  /** Token ids to prefill (already fitted to the context). */
  promptIds: number[];
  /** Prepended to each text when params.returnFullText. */
  promptText: string;
  params: GenerationParams;
  /** GenerationRequest.interactive: its rows keep decode-loop runs short. */
  interactive: boolean;
  /** Seed used when params.seed is absent. */
  fallbackSeed: number;
  submittedAt: number;
}

export interface RequestSink {
  onToken?(event: TokenEvent): void;
  onDone(result: GenerationResult): void;
}

export interface OutputProcessorOptions {
  eosId: number;
  decoder: TextDecoder;
  /** K of the runner's top_ids/top_logits outputs. */
  graphTopK: number;
  /** The most candidates the runner's in-graph sampler draws from; 0 without a decode loop. */
  graphCandidates: number;
  forceFullLogits: boolean;
  now: () => number;
}

/** One request's output: its sequences and when its first token came. */
export interface RequestOutput {
  readonly spec: ScheduledRequest;
  readonly sink: RequestSink;
  readonly sequences: SequenceOutput[];
  firstTokenAt?: number;
  /** Set by a cancel: no further token of the request is accepted. */
  cancelled: boolean;
}

/** One sequence's output state: its random stream, seen ids (repetition penalty), stops and text, logprobs. */
export interface SequenceOutput {
  readonly request: RequestOutput;
  readonly index: number;
  readonly sampler: TokenSampler;
  readonly stopper: SequenceStopper;
  readonly seen: Set<number>;
  /** With params.logprobs: one entry per accepted token. */
  readonly logprobs?: TokenLogprob[];
  /**
   * With params.promptLogprobs: the prompt tokens after the first, forced one per run result before any token is
   * chosen (the sequence's row is prefilled with the first prompt token only: Scheduler.enqueue).
   */
  readonly forced: readonly number[];
  /** With params.promptLogprobs: one entry per prompt token forced so far, after the first's (null) entry. */
  readonly promptLogprobs?: PromptTokenLogprob[];
  /** Its token choice needs the full logits row (needsFullLogits, or the engine forces full logits). */
  readonly needsFullLogits: boolean;
  /** The decode-loop graph can choose its tokens exactly as the host sampler would. */
  readonly fitsGraphSampler: boolean;
}

/** What one row's run result did to its sequence. */
export interface RowUpdate {
  /** Tokens accepted (0 when the sequence was already cancelled). */
  accepted: number;
  /** Prompt tokens forced (promptLogprobs): 1 when this result scored the prompt's next token, else 0. */
  forced: number;
  /** The last token accepted or forced (the next decode step's input), -1 if none. */
  token: number;
  /** The sequence has ended (eos, stop string, max tokens). */
  finished: boolean;
}

export class OutputProcessor {
  constructor(private readonly options: OutputProcessorOptions) {}

  private readonly textOfToken = (token: number): string => this.options.decoder.decode([token]);

  /** The output state of a new request: params.numReturnSequences sequences, each with its own random stream. */
  open(spec: ScheduledRequest, sink: RequestSink): RequestOutput {
    const { params } = spec;
    const seed = params.seed ?? spec.fallbackSeed;
    const request: RequestOutput = { spec, sink, sequences: [], cancelled: false };
    const [first, ...rest] = spec.promptIds;
    for (let index = 0; index < params.numReturnSequences; index++) {
      request.sequences.push({
        request,
        index,
        sampler: new TokenSampler(params, seed, index),
        stopper: new SequenceStopper(this.options.decoder, params, this.options.eosId),
        seen: new Set(spec.promptIds),
        logprobs: params.logprobs === undefined ? undefined : [],
        forced: params.promptLogprobs ? rest : [],
        promptLogprobs: params.promptLogprobs ? [{ token: first, text: this.textOfToken(first), logprob: null, top: null }] : undefined,
        needsFullLogits: this.options.forceFullLogits || needsFullLogits(params, this.options.graphTopK),
        fitsGraphSampler: fitsInGraphSampler(params, this.options.graphCandidates),
      });
    }
    return request;
  }

  /**
   * How the next token of a sequence is chosen from one run's scores (the one place): greedy rows take the runner's
   * top token; the others go through the host sampler, on the full logits when they need them, else on the top-K.
   */
  chooseToken(sequence: SequenceOutput, output: RowOutput): number {
    if (sequence.needsFullLogits && !output.full) throw new Error('scheduler bug: a row needing full logits got only top-K');
    if (sequence.sampler.greedy && output.best !== undefined) return output.best;
    const scores: RowScores = sequence.needsFullLogits && output.full
      ? { kind: 'full', logits: output.full }
      : { kind: 'top', ids: output.top.ids, logits: output.top.logits };
    return sequence.sampler.next(scores, sequence.seen);
  }

  /** The same choice for the next `steps` tokens, made inside a decode-loop run (draws the uniforms now, in order). */
  graphSampling(sequence: SequenceOutput, steps: number): RowSampling {
    return sequence.sampler.loopSampling(steps, sequence.seen);
  }

  /**
   * A one-step run's scores for this sequence: while it scores its prompt, the prompt's next token is forced and its
   * log-probability recorded; then the next token is chosen and accepted.
   */
  fromScores(sequence: SequenceOutput, output: RowOutput): RowUpdate {
    const { promptLogprobs } = sequence;
    if (promptLogprobs && !sequence.request.cancelled) {
      const scored = promptLogprobs.length - 1;
      if (scored < sequence.forced.length) {
        const token = sequence.forced[scored];
        promptLogprobs.push(tokenLogprob(output.full!, token, sequence.request.spec.params.logprobs!, this.textOfToken));
        // A prompt scored with max_tokens 0 ends with its last token (the run that would choose the next one is not made).
        const finished = scored + 1 === sequence.forced.length && sequence.request.spec.params.maxNewTokens === 0;
        if (finished) sequence.stopper.finish('length');
        return { accepted: 0, forced: 1, token, finished };
      }
      // A one-token prompt scored with max_tokens 0: its only run chooses nothing.
      if (sequence.request.spec.params.maxNewTokens === 0) {
        sequence.stopper.finish('length');
        return { accepted: 0, forced: 0, token: -1, finished: true };
      }
    }
    const token = this.chooseToken(sequence, output);
    // Rows asking for logprobs never take the decode loop (fitsInGraphSampler): every token of theirs comes here.
    if (sequence.logprobs) sequence.logprobs.push(tokenLogprob(output.full!, token, sequence.request.spec.params.logprobs!, this.textOfToken));
    return this.accept(sequence, [token]);
  }

  /** The tokens a decode-loop run chose for this sequence: accepted in order until it finishes or is cancelled. */
  fromGraph(sequence: SequenceOutput, tokens: readonly number[]): RowUpdate {
    return this.accept(sequence, tokens);
  }

  /** Ends the sequence from outside (cancel): its text so far, nothing more streamed. */
  cancel(sequence: SequenceOutput): void {
    sequence.stopper.finish('cancelled');
  }

  /** Every sequence of the request has ended: hands it its result. */
  complete(request: RequestOutput): void {
    const { spec } = request;
    const end = this.options.now();
    request.sink.onDone({
      id: spec.id,
      promptTokens: spec.promptIds.length,
      sequences: request.sequences.map((sequence) => ({
        text: spec.params.returnFullText ? spec.promptText + sequence.stopper.text : sequence.stopper.text,
        tokens: [...sequence.stopper.tokens],
        finishReason: sequence.stopper.finishReason ?? 'cancelled',
        ...(sequence.logprobs ? { logprobs: sequence.logprobs } : {}),
        ...(sequence.promptLogprobs ? { promptLogprobs: sequence.promptLogprobs } : {}),
      })),
      timeToFirstTokenMs: request.firstTokenAt === undefined ? -1 : request.firstTokenAt - spec.submittedAt,
      totalMs: end - spec.submittedAt,
    });
  }

  /** Stop criteria and streaming, token by token. */
  private accept(sequence: SequenceOutput, tokens: readonly number[]): RowUpdate {
    const { request } = sequence;
    const update: RowUpdate = { accepted: 0, forced: 0, token: -1, finished: false };
    for (const token of tokens) {
      // A cancel can come from a sink's callback, between two tokens of the same row.
      if (request.cancelled || update.finished) break;
      request.firstTokenAt ??= this.options.now();
      sequence.seen.add(token);
      const outcome = sequence.stopper.accept(token);
      request.sink.onToken?.({ id: request.spec.id, sequence: sequence.index, token, text: outcome.text });
      // The context bound needs no check of its own: prompt + maxNewTokens <= context is enforced on submit.
      update.accepted += 1;
      update.token = token;
      update.finished = outcome.finishReason !== undefined;
    }
    return update;
  }
}
