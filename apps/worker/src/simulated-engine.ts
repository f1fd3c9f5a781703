import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  DuplicateRequestError,
  EngineClosedError,
  Tokenizer,
  fitPromptToContext,
  resolveGenerationParams,
  type EngineStats,
  type GenerationParams,
  type GenerationRequest,
  type GenerationResult,
  type TokenEvent,
} from '@app/engine';
import type { ModelManifest } from '@app/model';
import type { WorkerEngine } from './ports';

// A stand-in for the GPU, for load tests of the queue path (FALCONQ_SIMULATED_STEP_MS): no model session. Every step
// of `stepMs` gives each running prompt one token, with up to `slots` prompts running at once, like a GPU whose
// decode step takes the same time for 1 or `slots` rows; a freed slot is taken at the next step (continuous
// batching). Prompts are checked and tokenized with the model's tokenizer as the real engine does; the text is filler.
// With ignore_eos a prompt gets exactly max_new_tokens tokens; without, it ends (eos) after between half and all of
// them, fixed per request id, so prompts finish at different steps as real text does.

export interface SimulatedEngineOptions {
  modelDir: string;
  slots: number;
  /** Time of one decode step; full throughput = slots x 1000 / stepMs tokens per second. */
  stepMs: number;
}

interface Running {
  request: GenerationRequest;
  params: GenerationParams;
  promptTokens: number;
  submittedAt: number;
  firstTokenAt: number;
  tokens: number;
  /** Tokens this prompt gets: max_new_tokens, or fewer when it ends at a simulated eos. */
  length: number;
  cancelled: boolean;
  onToken?: (event: TokenEvent) => void;
  resolve(result: GenerationResult): void;
  reject(error: Error): void;
}

/** Filler words a token stands for: about four characters each, like English text. */
const FILLER = [' the', ' of', ' and', ' to', ' in', ' is', ' was', ' for', ' on', ' are', ' with', ' as'];

export class SimulatedEngine implements WorkerEngine {
  private readonly waiting: Running[] = [];
  private readonly running = new Map<string, Running>();
  private readonly all = new Map<string, Running>();
  private timer: NodeJS.Timeout | undefined;
  private nextStepAt = 0;
  /** When the previous step ran (0 while idle): the time a step really took goes into decodeMsTotal. */
  private lastStepAt = 0;
  private closed = false;
  private readonly counters = { steps: 0, generatedTokens: 0, promptTokens: 0, decodeRows: 0, decodeMs: 0, finishedSequences: 0, cancelledRequests: 0 };

  private constructor(
    private readonly options: SimulatedEngineOptions,
    private readonly tokenizer: Tokenizer,
    private readonly contextLength: number,
  ) {}

  static start(options: SimulatedEngineOptions): SimulatedEngine {
    const manifest = JSON.parse(readFileSync(join(options.modelDir, 'falconq.json'), 'utf8')) as ModelManifest;
    return new SimulatedEngine(options, Tokenizer.fromModelDir(options.modelDir), manifest.shape.contextLength);
  }

  submit(request: GenerationRequest, onToken?: (event: TokenEvent) => void): Promise<GenerationResult> {
    if (this.closed) return Promise.reject(new EngineClosedError('the engine is closed'));
    if (this.all.has(request.id)) return Promise.reject(new DuplicateRequestError(`request ${request.id} is already in flight`));
    let params: GenerationParams;
    let promptTokens: number;
    try {
      params = resolveGenerationParams(request.params, { contextLength: this.contextLength });
      const ids = request.promptIds ?? this.tokenizer.encode(request.prompt);
      promptTokens = fitPromptToContext(ids, params, this.contextLength).length;
    } catch (error) {
      return Promise.reject(error);
    }
    return new Promise((resolve, reject) => {
      const length = params.ignoreEos ? params.maxNewTokens : eosLength(request.id, params.maxNewTokens);
      const entry: Running = { request, params, promptTokens, submittedAt: Date.now(), firstTokenAt: 0, tokens: 0, length, cancelled: false, onToken, resolve, reject };
      this.all.set(request.id, entry);
      this.waiting.push(entry);
      this.counters.promptTokens += promptTokens;
      this.schedule();
    });
  }

  cancel(requestId: string): void {
    const entry = this.all.get(requestId);
    if (!entry) return;
    entry.cancelled = true;
    const queued = this.waiting.indexOf(entry);
    if (queued >= 0) {
      this.waiting.splice(queued, 1);
      this.finish(entry);
    }
  }

  stats(): EngineStats {
    const c = this.counters;
    return {
      activeSequences: this.running.size, waitingRequests: this.waiting.length, slots: this.options.slots,
      steps: c.steps, generatedTokens: c.generatedTokens, promptTokens: c.promptTokens,
      decodeMsTotal: c.decodeMs, prefillMsTotal: 0, fullLogitsSteps: 0, decodeSteps: c.steps, decodeRuns: c.steps,
      decodeRows: c.decodeRows, prefillRuns: 0, finishedSequences: c.finishedSequences, cancelledRequests: c.cancelledRequests,
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    // Like the real engine: requests still pending reject when it closes.
    for (const entry of this.all.values()) entry.reject(new EngineClosedError('the engine was closed'));
    this.all.clear();
    this.waiting.length = 0;
    this.running.clear();
  }

  /** Steps run on a fixed clock (not drifting by the time a step's callbacks take) while there is work. */
  private schedule(): void {
    if (this.timer || this.closed) return;
    const now = Date.now();
    this.nextStepAt = Math.max(this.nextStepAt + this.options.stepMs, now);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.step();
      if (this.running.size > 0 || this.waiting.length > 0) this.schedule();
      else this.nextStepAt = this.lastStepAt = 0;
    }, this.nextStepAt - now);
  }

  private step(): void {
    while (this.running.size < this.options.slots && this.waiting.length > 0) {
      const entry = this.waiting.shift()!;
      this.running.set(entry.request.id, entry);
    }
    this.counters.steps += 1;
    this.counters.decodeRows += this.running.size;
    const now = Date.now();
    // A step "takes" the time since the previous one: the nominal stepMs, or more when this process runs late.
    this.counters.decodeMs += this.lastStepAt ? now - this.lastStepAt : this.options.stepMs;
    this.lastStepAt = now;
    for (const entry of [...this.running.values()]) {
      if (entry.cancelled) {
        this.finish(entry);
        continue;
      }
      const text = FILLER[entry.tokens % FILLER.length];
      entry.tokens += 1;
      entry.firstTokenAt ||= now;
      this.counters.generatedTokens += entry.params.numReturnSequences;
      for (let sequence = 0; sequence < entry.params.numReturnSequences; sequence++) {
        entry.onToken?.({ id: entry.request.id, sequence, token: entry.tokens % 1000, text });
      }
      if (entry.tokens >= entry.length) this.finish(entry);
    }
  }

  private finish(entry: Running): void {
    this.running.delete(entry.request.id);
    this.all.delete(entry.request.id);
    if (entry.cancelled) this.counters.cancelledRequests += 1;
    this.counters.finishedSequences += entry.params.numReturnSequences;
    const text = Array.from({ length: entry.tokens }, (_, i) => FILLER[i % FILLER.length]).join('');
    const finishReason = entry.cancelled ? 'cancelled' : entry.length < entry.params.maxNewTokens ? 'eos' : 'length';
    const now = Date.now();
    entry.resolve({
      id: entry.request.id,
      promptTokens: entry.promptTokens,
      sequences: Array.from({ length: entry.params.numReturnSequences }, () => ({
        text: entry.params.returnFullText ? entry.request.prompt + text : text,
        tokens: Array.from({ length: entry.tokens }, (_, i) => i % 1000),
        finishReason,
      })),
      timeToFirstTokenMs: entry.firstTokenAt ? entry.firstTokenAt - entry.submittedAt : 0,
      totalMs: now - entry.submittedAt,
    });
  }
}

/** Where a prompt without ignore_eos ends: between half and all of max_new_tokens, from a hash of its id. */
function eosLength(id: string, maxNewTokens: number): number {
  let hash = 2166136261;
  for (let i = 0; i < id.length; i++) hash = Math.imul(hash ^ id.charCodeAt(i), 16777619) >>> 0;
  const shortest = Math.ceil(maxNewTokens / 2);
  return shortest + (hash % (maxNewTokens - shortest + 1));
}
