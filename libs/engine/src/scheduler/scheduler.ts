// Continuous batching over a fixed number of rows (slots). Each step: at most one bounded prefill run (newcomers,
// or one chunk of a long prompt), then one decode run for every live row. Finished rows leave at once and waiting
// sequences take their rows on the next step. Pure: the model is a ForwardRunner.

import type { EngineStats, GenerationParams, GenerationResult, TokenEvent, TokenLogprob } from '../api';
import { fitsInGraphSampler, needsFullLogits, TokenSampler } from '../sampling/sampler';
import { tokenLogprob } from '../sampling/logprobs';
import type { RowScores } from '../sampling/candidates';
import { SequenceStopper, type TextDecoder } from '../stopping';
import type { ChunkEntry, ForwardRunner, RowOutput, RowToken, RowTokens } from './forward-runner';

export interface SchedulerOptions {
  /** Upper bound of prompt tokens (padding included) in one prefill run. */
  prefillChunkTokens: number;
  /** joinMode prefill, while rows decode: prefill newcomers once this many wait (default 1: at once)... */
  joinGroup?: number;
  /** ...or once the oldest has waited this many steps. */
  joinMaxWaitSteps?: number;
  /** 'static' admits only into an empty batch. */
  admission: 'continuous' | 'static';
  forceFullLogits: boolean;
  /**
   * Decode steps per run when the runner has a decode loop (decodeChunk) and every decoding row fits its sampler;
   * 1 (default) decodes one step per run.
   */
  decodeChunkSteps?: number;
  /**
   * While sequences wait for a row, a decode-loop run ends when the first live row reaches its token budget (so the
   * row frees for a newcomer) but lasts at least this many steps (each run moves the KV cache through the host).
   * Default: decodeChunkSteps (runs always as long as allowed).
   */
  decodeChunkMinSteps?: number;
  eosId: number;
  decoder: TextDecoder;
  now?: () => number;
}

export interface ScheduledRequest {
  id: string;
  /** Token ids to prefill (already fitted to the context). */
  promptIds: number[];
  /** Prepended to each text when params.returnFullText. */
  promptText: string;
  params: GenerationParams;
  /** Seed used when params.seed is absent. */
  fallbackSeed: number;
  submittedAt: number;
}

export interface RequestSink {
  onToken?(event: TokenEvent): void;
  onDone(result: GenerationResult): void;
}

type Phase = 'waiting' | 'prefilling' | 'decoding' | 'done';

interface Sequence {
  request: RequestState;
  index: number;
  phase: Phase;
  row: number;
  /** Prompt tokens already in this row's KV cache. */
  prefilled: number;
  /** Scheduler step at which the sequence took its row. */
  admittedAtStep: number;
  /** The token to feed on the next decode step. */
  pending: number;
  needsFull: boolean;
  /** The decode-loop graph can choose this sequence's tokens (fitsInGraphSampler). */
  fitsGraphSampler: boolean;
  sampler: TokenSampler;
  stopper: SequenceStopper;
  seen: Set<number>;
  /** With params.logprobs: one entry per accepted token. */
  logprobs?: TokenLogprob[];
}

interface RequestState {
  spec: ScheduledRequest;
  sink: RequestSink;
  sequences: Sequence[];
  firstTokenAt?: number;
  cancelled: boolean;
}

export class Scheduler {
  private readonly waiting: Sequence[] = [];
  private readonly live = new Map<number, Sequence>();
  private readonly freeRows: number[];
  private readonly requests = new Map<string, RequestState>();
  private readonly pendingCancels: RequestState[] = [];
  private stepping = false;
  private readonly now: () => number;
  private readonly counters = {
    steps: 0,
    generatedTokens: 0,
    promptTokens: 0,
    decodeMsTotal: 0,
    prefillMsTotal: 0,
    fullLogitsSteps: 0,
    decodeSteps: 0,
    decodeRuns: 0,
    decodeRows: 0,
    prefillRuns: 0,
    finishedSequences: 0,
    cancelledRequests: 0,
  };

  constructor(
    private readonly runner: ForwardRunner,
    private readonly options: SchedulerOptions,
  ) {
    this.freeRows = Array.from({ length: runner.rows }, (_, row) => runner.rows - 1 - row);
    this.now = options.now ?? (() => performance.now());
  }

  private readonly textOfToken = (token: number): string => this.options.decoder.decode([token]);

  has(id: string): boolean {
    return this.requests.has(id);
  }

  get idle(): boolean {
    return this.waiting.length === 0 && this.live.size === 0;
  }

  enqueue(spec: ScheduledRequest, sink: RequestSink): void {
    if (this.requests.has(spec.id)) throw new Error(`request ${spec.id} is already in flight`);
    const { params } = spec;
    const seed = params.seed ?? spec.fallbackSeed;
    const request: RequestState = { spec, sink, sequences: [], cancelled: false };
    for (let index = 0; index < params.numReturnSequences; index++) {
      const sequence: Sequence = {
        request,
        index,
        phase: 'waiting',
        row: -1,
        prefilled: 0,
        admittedAtStep: 0,
        pending: -1,
        needsFull: this.options.forceFullLogits || needsFullLogits(params, this.runner.graphTopK),
        fitsGraphSampler: fitsInGraphSampler(params, this.runner.chunkCandidates ?? 0),
        sampler: new TokenSampler(params, seed, index),
        stopper: new SequenceStopper(this.options.decoder, params, this.options.eosId),
        seen: new Set(spec.promptIds),
        logprobs: params.logprobs === undefined ? undefined : [],
      };
      request.sequences.push(sequence);
      this.waiting.push(sequence);
    }
    this.requests.set(spec.id, request);
  }

  /**
   * Ends a request: its sequences finish as 'cancelled' with the text so far, now, or at the end of the step in
   * flight (rows are never released under a running model call). Returns false if unknown.
   */
  cancel(id: string): boolean {
    const request = this.requests.get(id);
    if (!request || request.cancelled) return request !== undefined;
    request.cancelled = true;
    this.counters.cancelledRequests += 1;
    if (this.stepping) this.pendingCancels.push(request);
    else this.applyCancel(request);
    return true;
  }

  private applyCancel(request: RequestState): void {
    for (const sequence of request.sequences) {
      if (sequence.phase === 'done') continue;
      sequence.stopper.finish('cancelled');
      this.finishSequence(sequence);
    }
  }

  stats(): EngineStats {
    return {
      activeSequences: this.live.size,
      waitingRequests: new Set(this.waiting.map((sequence) => sequence.request.spec.id)).size,
      slots: this.runner.rows,
      ...this.counters,
    };
  }

  /** One scheduling step. Returns false when there was nothing to do. Steps must not overlap. */
  async step(): Promise<boolean> {
    if (this.idle) return false;
    if (this.stepping) throw new Error('scheduler: step() called while a step is running');
    this.stepping = true;
    try {
      this.counters.steps += 1;
      if (this.runner.joinMode === 'prefill') {
        this.admit();
        await this.prefillOnce();
      } else {
        await this.startDeviceBatchIfEmpty();
        this.admit();
      }
      this.applyPendingCancels();
      await this.decodeOnce();
    } finally {
      this.stepping = false;
      this.applyPendingCancels();
    }
    return true;
  }

  private applyPendingCancels(): void {
    for (const request of this.pendingCancels.splice(0)) this.applyCancel(request);
  }

  // --- admission and prefill ---

  private admit(): void {
    if (this.options.admission === 'static' && this.live.size > 0) return;
    while (this.waiting.length > 0 && this.freeRows.length > 0) {
      const sequence = this.waiting.shift() as Sequence;
      sequence.row = this.freeRows.pop() as number;
      sequence.phase = 'prefilling';
      sequence.admittedAtStep = this.counters.steps;
      this.live.set(sequence.row, sequence);
    }
  }

  /** joinMode prefill: one bounded prefill run: the next chunk of a long prompt, or a group of fresh short prompts. */
  private async prefillOnce(): Promise<void> {
    const budget = this.options.prefillChunkTokens;
    const prefilling = [...this.live.values()].filter((sequence) => sequence.phase === 'prefilling');
    const midway = prefilling.find((sequence) => sequence.prefilled > 0);
    if (midway) {
      const chunk = promptOf(midway).slice(midway.prefilled, midway.prefilled + budget);
      const output = await this.timedPrefill(() => this.runner.extend({ row: midway.row, tokens: chunk }, this.wantsFull([midway])));
      this.afterPrefill(midway, chunk.length, output);
      return;
    }
    const group: Sequence[] = [];
    let longest = 0;
    for (const sequence of prefilling) {
      const length = promptOf(sequence).length;
      if (group.length === 0 && length > budget) {
        const chunk = promptOf(sequence).slice(0, budget);
        const [output] = await this.timedPrefill(() => this.runner.prefill([prefillEntry(sequence, chunk)], this.wantsFull([sequence])));
        this.afterPrefill(sequence, chunk.length, output);
        return;
      }
      if ((group.length + 1) * Math.max(longest, length) > budget) break;
      group.push(sequence);
      longest = Math.max(longest, length);
    }
    if (group.length === 0 || this.deferJoin(group, prefilling.length)) return;
    const entries: RowTokens[] = group.map((sequence) => prefillEntry(sequence));
    const outputs = await this.timedPrefill(() => this.runner.prefill(entries, this.wantsFull(group)));
    group.forEach((sequence, i) => this.afterPrefill(sequence, entries[i].tokens.length, outputs[i]));
  }

  /** Whether `group` (all of the `candidates` newcomers, or as many as the budget allows) should wait for more. */
  private deferJoin(group: Sequence[], candidates: number): boolean {
    const decoding = [...this.live.values()].some((sequence) => sequence.phase === 'decoding');
    if (!decoding || group.length < candidates) return false;
    const oldest = Math.min(...group.map((sequence) => sequence.admittedAtStep));
    return group.length < (this.options.joinGroup ?? 1) && this.counters.steps - oldest < (this.options.joinMaxWaitSteps ?? 0);
  }

  /**
   * joinMode decode: a batch starts only when no row is live: every waiting sequence whose prompt fits the token budget
   * (rows x longest prompt, padding included) is prefilled in one run; the others join through decode.
   */
  private async startDeviceBatchIfEmpty(): Promise<void> {
    if (this.live.size > 0 || this.waiting.length === 0) return;
    this.admit();
    const perRowBudget = Math.floor(this.options.prefillChunkTokens / this.runner.rows);
    const group = [...this.live.values()].filter((sequence) => promptOf(sequence).length <= perRowBudget);
    if (group.length === 0) return;
    const entries = group.map((sequence) => prefillEntry(sequence));
    const outputs = await this.timedPrefill(() => this.runner.prefill(entries, this.wantsFull(group)));
    group.forEach((sequence, i) => this.afterPrefill(sequence, entries[i].tokens.length, outputs[i]));
  }

  private afterPrefill(sequence: Sequence, tokens: number, output: RowOutput): void {
    if (sequence.phase === 'done' || sequence.request.cancelled) return;
    this.counters.promptTokens += tokens;
    sequence.prefilled += tokens;
    if (sequence.prefilled < promptOf(sequence).length) return;
    sequence.phase = 'decoding';
    this.sampleAndAccept(sequence, output);
  }

  // --- decode ---

  private async decodeOnce(): Promise<void> {
    const feeding: Sequence[] = [];
    const entries: RowToken[] = [];
    for (const sequence of this.live.values()) {
      if (sequence.phase === 'decoding') {
        feeding.push(sequence);
        entries.push({ row: sequence.row, token: sequence.pending });
      } else if (sequence.phase === 'prefilling' && this.runner.joinMode === 'decode') {
        // Prefill through decode: one prompt token per step at the row's own position.
        feeding.push(sequence);
        entries.push({ row: sequence.row, token: promptOf(sequence)[sequence.prefilled] });
      }
    }
    if (entries.length === 0) return;
    const chunkSteps = this.chunkStepsFor(feeding);
    if (chunkSteps > 1) {
      await this.decodeChunk(feeding, chunkSteps);
      return;
    }
    const sampling = feeding.filter((sequence) => sequence.phase === 'decoding' || this.isLastPromptToken(sequence));
    const fullLogits = this.wantsFull(sampling);
    const started = this.now();
    const outputs = await this.runner.decode(entries, fullLogits);
    this.counters.decodeMsTotal += this.now() - started;
    this.counters.decodeSteps += 1;
    this.counters.decodeRuns += 1;
    this.counters.decodeRows += entries.length;
    if (fullLogits) this.counters.fullLogitsSteps += 1;
    feeding.forEach((sequence, i) => {
      if (sequence.request.cancelled) return;
      if (sequence.phase === 'decoding') this.sampleAndAccept(sequence, outputs[i]);
      else this.afterPrefill(sequence, 1, outputs[i]);
    });
  }

  /**
   * How many steps the next decode run may take in one go: 1 unless the runner has a decode loop and every row fits
   * its sampler; never more than the longest remaining budget, nor past any row's context.
   */
  private chunkStepsFor(feeding: Sequence[]): number {
    const wanted = this.options.decodeChunkSteps ?? 1;
    if (wanted <= 1 || !this.runner.decodeChunk || this.options.forceFullLogits) return 1;
    let remaining = 0;
    let firstToFinish = Infinity;
    let room = Infinity;
    for (const sequence of feeding) {
      if (sequence.phase !== 'decoding' || !sequence.fitsGraphSampler) return 1;
      const generated = sequence.stopper.tokens.length;
      const left = sequence.request.spec.params.maxNewTokens - generated;
      remaining = Math.max(remaining, left);
      firstToFinish = Math.min(firstToFinish, left);
      // Positions in the cache: the prompt and every generated token but the pending one.
      room = Math.min(room, this.runner.contextLength - (promptOf(sequence).length + generated - 1));
    }
    let steps = Math.min(wanted, remaining, room);
    // Someone is waiting for a row, or for the rest of its prompt's prefill (one chunk per step).
    const joining = this.waiting.length > 0 || feeding.length < this.live.size;
    if (joining) steps = Math.min(steps, Math.max(this.options.decodeChunkMinSteps ?? wanted, firstToFinish));
    return Math.max(1, steps);
  }

  /** Several decode steps in one run; each row's tokens are accepted in order until it finishes. */
  private async decodeChunk(feeding: Sequence[], steps: number): Promise<void> {
    const entries: ChunkEntry[] = feeding.map((sequence) => ({
      row: sequence.row,
      token: sequence.pending,
      sampling: sequence.sampler.loopSampling(steps, sequence.seen),
    }));
    const started = this.now();
    const tokens = await (this.runner.decodeChunk as NonNullable<ForwardRunner['decodeChunk']>)(entries, steps);
    this.counters.decodeMsTotal += this.now() - started;
    this.counters.decodeSteps += steps;
    this.counters.decodeRuns += 1;
    this.counters.decodeRows += entries.length * steps;
    feeding.forEach((sequence, i) => {
      for (const token of tokens[i]) {
        if (sequence.request.cancelled || sequence.phase === 'done') break;
        this.accept(sequence, token);
      }
    });
  }

  private isLastPromptToken(sequence: Sequence): boolean {
    return sequence.phase === 'prefilling' && sequence.prefilled === promptOf(sequence).length - 1;
  }

  private wantsFull(sequences: Sequence[]): boolean {
    return this.options.forceFullLogits || sequences.some((sequence) => sequence.needsFull);
  }

  private sampleAndAccept(sequence: Sequence, output: RowOutput): void {
    if (sequence.needsFull && !output.full) throw new Error('scheduler bug: a row needing full logits got only top-K');
    const token = sequence.sampler.greedy && output.best !== undefined ? output.best : sequence.sampler.next(scoresOf(sequence, output), sequence.seen);
    // Rows asking for logprobs never take the decode loop (fitsInGraphSampler): every token of theirs comes here.
    if (sequence.logprobs) sequence.logprobs.push(tokenLogprob(output.full!, token, sequence.request.spec.params.logprobs!, this.textOfToken));
    this.accept(sequence, token);
  }

  private accept(sequence: Sequence, token: number): void {
    const request = sequence.request;
    request.firstTokenAt ??= this.now();
    this.counters.generatedTokens += 1;
    sequence.seen.add(token);
    const outcome = sequence.stopper.accept(token);
    request.sink.onToken?.({ id: request.spec.id, sequence: sequence.index, token, text: outcome.text });
    // The context bound needs no check of its own: prompt + maxNewTokens <= context is enforced on submit.
    if (outcome.finishReason) this.finishSequence(sequence);
    else sequence.pending = token;
  }

  // --- retirement ---

  private finishSequence(sequence: Sequence): void {
    const request = sequence.request;
    if (sequence.phase === 'waiting') {
      this.waiting.splice(this.waiting.indexOf(sequence), 1);
    } else if (sequence.row >= 0) {
      this.live.delete(sequence.row);
      this.runner.release(sequence.row);
      this.freeRows.push(sequence.row);
    }
    sequence.phase = 'done';
    this.counters.finishedSequences += 1;
    if (request.sequences.every((each) => each.phase === 'done')) this.completeRequest(request);
  }

  private completeRequest(request: RequestState): void {
    this.requests.delete(request.spec.id);
    const { spec } = request;
    const end = this.now();
    request.sink.onDone({
      id: spec.id,
      promptTokens: spec.promptIds.length,
      sequences: request.sequences.map((sequence) => ({
        text: spec.params.returnFullText ? spec.promptText + sequence.stopper.text : sequence.stopper.text,
        tokens: [...sequence.stopper.tokens],
        finishReason: sequence.stopper.finishReason ?? 'cancelled',
        ...(sequence.logprobs ? { logprobs: sequence.logprobs } : {}),
      })),
      timeToFirstTokenMs: request.firstTokenAt === undefined ? -1 : request.firstTokenAt - spec.submittedAt,
      totalMs: end - spec.submittedAt,
    });
  }

  private async timedPrefill<T>(run: () => Promise<T>): Promise<T> {
    const started = this.now();
    const result = await run();
    this.counters.prefillMsTotal += this.now() - started;
    this.counters.prefillRuns += 1;
    return result;
  }
}

function promptOf(sequence: Sequence): number[] {
  return sequence.request.spec.promptIds;
}

/** A prefill of the sequence's row with `tokens` (its whole prompt, or a first chunk of it). */
function prefillEntry(sequence: Sequence, tokens = promptOf(sequence)): RowTokens {
  // The most tokens the row will hold: the prompt and every token the sequence may generate.
  return { row: sequence.row, tokens, maxLength: promptOf(sequence).length + sequence.request.spec.params.maxNewTokens };
}

function scoresOf(sequence: Sequence, output: RowOutput): RowScores {
  return sequence.needsFull && output.full ? { kind: 'full', logits: output.full } : { kind: 'top', ids: output.top.ids, logits: output.top.logits };
}
