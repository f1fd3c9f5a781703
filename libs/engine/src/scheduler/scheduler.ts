// Continuous batching over a fixed number of rows (slots), in three parts glued here, one step at a time:
// - the planner (step-plan.ts, pure) decides each model run from the batch's state: at most one bounded prefill
//   (newcomers, in one or more length-sorted runs, or one chunk of a long prompt), then one decode run for every
//   live row (one step, or several in a decode-loop run);
// - the runner executes a plan (execute-plan.ts over a ForwardRunner) and returns raw per-row results;
// - the output processor (output-processor.ts) turns each row's result into accepted tokens: token choice, stops,
//   streaming, results.
// This class owns the state between them: waiting sequences, rows, prompt progress, cancels and counters. Finished
// rows leave at once and waiting sequences take their rows on the next step.

import type { EngineStats } from '../api';
import type { TextDecoder } from '../stopping';
import { executePlan, type RunResult } from './execute-plan';
import type { ForwardRunner } from './forward-runner';
import { OutputProcessor, type RequestOutput, type RequestSink, type RowUpdate, type ScheduledRequest, type SequenceOutput } from './output-processor';
import { planDecode, planPrefill, type BatchView, type DecodePlan, type PlannerConfig, type PrefillPlan, type SlotState } from './step-plan';

export type { RequestSink, ScheduledRequest } from './output-processor';

export interface SchedulerOptions {
  /** Upper bound of prompt tokens (padding included) in one prefill run. */
  prefillChunkTokens: number;
  /** A prefill run's fixed cost in prompt tokens: join groups split into length-sorted runs (PlannerConfig). */
  prefillRunCostTokens?: number;
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

type Phase = 'waiting' | 'prefilling' | 'decoding' | 'done';

/** A sequence's place in the batch (what the planner reads), and its output state (the output processor's). */
interface Sequence extends Omit<SlotState, 'phase'> {
  request: RequestState;
  phase: Phase;
  output: SequenceOutput;
}

interface RequestState {
  output: RequestOutput;
  sequences: Sequence[];
}

export class Scheduler {
  private readonly waiting: Sequence[] = [];
  private readonly live = new Map<number, Sequence>();
  private readonly freeRows: number[];
  private readonly requests = new Map<string, RequestState>();
  private readonly pendingCancels: RequestState[] = [];
  private readonly planner: PlannerConfig;
  private readonly processor: OutputProcessor;
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
    this.planner = {
      joinMode: runner.joinMode,
      rows: runner.rows,
      contextLength: runner.contextLength,
      decodeLoop: runner.decodeChunk !== undefined,
      prefillChunkTokens: options.prefillChunkTokens,
      prefillRunCostTokens: options.prefillRunCostTokens,
      joinGroup: options.joinGroup,
      joinMaxWaitSteps: options.joinMaxWaitSteps,
      forceFullLogits: options.forceFullLogits,
      continuous: options.admission === 'continuous',
      decodeChunkSteps: options.decodeChunkSteps,
      decodeChunkMinSteps: options.decodeChunkMinSteps,
    };
    this.processor = new OutputProcessor({
      eosId: options.eosId,
      decoder: options.decoder,
      graphTopK: runner.graphTopK,
      graphCandidates: runner.chunkCandidates ?? 0,
      forceFullLogits: options.forceFullLogits,
      now: this.now,
    });
  }

  has(id: string): boolean {
    return this.requests.has(id);
  }

  get idle(): boolean {
    return this.waiting.length === 0 && this.live.size === 0;
  }

  enqueue(spec: ScheduledRequest, sink: RequestSink): void {
    if (this.requests.has(spec.id)) throw new Error(`request ${spec.id} is already in flight`);
    const request: RequestState = { output: this.processor.open(spec, sink), sequences: [] };
    for (const output of request.output.sequences) {
      // A sequence scoring its prompt (promptLogprobs) prefills the prompt's first token only; the rest comes one per
      // decode step, forced by the output processor: to the planner those steps look like generated tokens.
      const forced = output.forced.length;
      const sequence: Sequence = {
        request,
        output,
        phase: 'waiting',
        row: -1,
        prompt: forced > 0 ? spec.promptIds.slice(0, spec.promptIds.length - forced) : spec.promptIds,
        prefilled: 0,
        admittedAtStep: 0,
        generated: 0,
        maxNewTokens: spec.params.maxNewTokens + forced,
        pending: -1,
        needsFullLogits: output.needsFullLogits,
        fitsGraphSampler: output.fitsGraphSampler,
        interactive: spec.interactive,
        endsOnlyAtBudget: spec.params.ignoreEos && spec.params.stop.length === 0,
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
    if (!request || request.output.cancelled) return request !== undefined;
    request.output.cancelled = true;
    this.counters.cancelledRequests += 1;
    if (this.stepping) this.pendingCancels.push(request);
    else this.applyCancel(request);
    return true;
  }

  private applyCancel(request: RequestState): void {
    for (const sequence of request.sequences) {
      if (sequence.phase === 'done') continue;
      this.processor.cancel(sequence.output);
      this.finishSequence(sequence);
    }
  }

  stats(): EngineStats {
    return {
      activeSequences: this.live.size,
      waitingRequests: new Set(this.waiting.map((sequence) => sequence.request.output.spec.id)).size,
      slots: this.runner.rows,
      ...this.counters,
    };
  }

  /** One scheduling step: admit, plan -> execute -> process each run, update. Returns false when there was nothing to do. Steps must not overlap. */
  async step(): Promise<boolean> {
    if (this.idle) return false;
    if (this.stepping) throw new Error('scheduler: step() called while a step is running');
    this.stepping = true;
    try {
      this.counters.steps += 1;
      // joinMode decode: a prefill run only starts a batch, so newcomers take rows then only if the batch is empty;
      // the others join after it (fed their prompts through decode).
      if (this.runner.joinMode === 'prefill' || this.live.size === 0) this.admit();
      const prefill = planPrefill(this.view(), this.planner);
      if (prefill) await this.prefill(prefill);
      if (this.runner.joinMode === 'decode') this.admit();
      this.applyPendingCancels();
      const decode = planDecode(this.view(), this.planner);
      if (decode) await this.decode(decode);
    } finally {
      this.stepping = false;
      this.applyPendingCancels();
    }
    return true;
  }

  private applyPendingCancels(): void {
    for (const request of this.pendingCancels.splice(0)) this.applyCancel(request);
  }

  private view(): BatchView {
    return { step: this.counters.steps, live: [...this.live.values()] as SlotState[], waiting: this.waiting.length };
  }

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

  // --- runs: execute a plan, hand each row's result to the output processor, update the batch ---

  private async prefill(plan: PrefillPlan): Promise<void> {
    const sequences = this.sequencesOf(plan);
    const result = await this.timed(plan, () => executePlan(this.runner, plan));
    const { rows } = scoresOf(result);
    plan.rows.forEach((entry, i) => {
      const sequence = sequences[i];
      if (sequence.phase === 'done' || sequence.request.output.cancelled) return;
      this.advancePrompt(sequence, entry.tokens.length);
      if (entry.completesPrompt) this.update(sequence, this.processor.fromScores(sequence.output, rows[i]));
    });
  }

  private async decode(plan: DecodePlan): Promise<void> {
    const sequences = this.sequencesOf(plan);
    const graphSampling = plan.steps > 1 ? sequences.map((sequence) => this.processor.graphSampling(sequence.output, plan.steps)) : [];
    const result = await this.timed(plan, () => executePlan(this.runner, plan, graphSampling));
    if (result.kind === 'tokens') {
      sequences.forEach((sequence, i) => this.update(sequence, this.processor.fromGraph(sequence.output, result.rows[i])));
      return;
    }
    plan.rows.forEach((entry, i) => {
      const sequence = sequences[i];
      if (sequence.request.output.cancelled) return;
      if (entry.promptToken) this.advancePrompt(sequence, 1);
      if (entry.choice === 'host') this.update(sequence, this.processor.fromScores(sequence.output, result.rows[i]));
    });
  }

  private sequencesOf(plan: PrefillPlan | DecodePlan): Sequence[] {
    return plan.rows.map(({ row }) => this.live.get(row) as Sequence);
  }

  /** `tokens` more of the sequence's prompt are in its row's cache; with the last of them it starts decoding. */
  private advancePrompt(sequence: Sequence, tokens: number): void {
    this.counters.promptTokens += tokens;
    sequence.prefilled += tokens;
    if (sequence.prefilled === sequence.prompt.length) sequence.phase = 'decoding';
  }

  private update(sequence: Sequence, update: RowUpdate): void {
    this.counters.generatedTokens += update.accepted;
    this.counters.promptTokens += update.forced;
    sequence.generated += update.accepted + update.forced;
    if (update.finished) this.finishSequence(sequence);
    else if (update.accepted + update.forced > 0) sequence.pending = update.token;
  }

  private async timed(plan: PrefillPlan | DecodePlan, run: () => Promise<RunResult>): Promise<RunResult> {
    const started = this.now();
    const result = await run();
    const ms = this.now() - started;
    if (plan.kind === 'decode') {
      this.counters.decodeMsTotal += ms;
      this.counters.decodeSteps += plan.steps;
      this.counters.decodeRuns += 1;
      this.counters.decodeRows += plan.rows.length * plan.steps;
      if (plan.fullLogits) this.counters.fullLogitsSteps += 1;
    } else {
      this.counters.prefillMsTotal += ms;
      this.counters.prefillRuns += plan.runs?.length ?? 1;
    }
    return result;
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
    if (request.sequences.every((each) => each.phase === 'done')) {
      this.requests.delete(request.output.spec.id);
      this.processor.complete(request.output);
    }
  }
}

function scoresOf(result: RunResult): Extract<RunResult, { kind: 'scores' }> {
  if (result.kind !== 'scores') throw new Error('scheduler bug: a prefill run returned tokens');
  return result;
}
