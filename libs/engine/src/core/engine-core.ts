// The engine itself: tokenizer, onnxruntime session, KV runner and scheduler, driven by a pump that runs one step
// at a time and yields between steps. Runs inside the engine's worker_thread (thread/engine-thread.ts) or, in
// in-process mode, in the caller's thread. Loads onnxruntime-node.

import { threadId } from 'node:worker_threads';
import { CUDA_FPA_INTB_AUTO_MIN_SLOTS, SWITCH_CHOICES, EXECUTION_PROVIDER_CHOICES, type EngineInfo, type EngineOptions, type EngineStats, type GenerationRequest, type GenerationResult, type TokenEvent } from '../api';
import { DuplicateRequestError, EngineClosedError, EngineConfigurationError, InvalidGenerationParamError } from '../errors';
import { fitPromptToContext, resolveGenerationParams } from '../params';
import { randomSeed } from '../sampling/prng';
import type { ForwardRunner, KvPlacement } from '../scheduler/forward-runner';
import { Scheduler } from '../scheduler/scheduler';
import { prefillWarmUpShapes, warmsUpPrefill, warmUpPrefill } from './prefill-warm-up';
import { Tokenizer } from '../tokenizer';
import { DeviceKvRunner } from '../runtime/device-kv-runner';
import { HostKvRunner } from '../runtime/host-kv-runner';
import { MergeKvRunner } from '../runtime/merge-kv-runner';
import { backendFacts, type ModelSession, openModelSession, readManifest } from '../runtime/model-session';
import { providerUnavailableReason } from '../runtime/providers';
import type { ExecutionProviderName } from '@app/model';

/** Options that can cross a thread boundary (no callbacks). */
export type EngineCoreOptions = Omit<EngineOptions, 'onWarning' | 'inProcess'>;

export interface CoreRequestSink {
  onToken?(event: TokenEvent): void;
  onDone(result: GenerationResult): void;
  onError(error: Error): void;
}

/** Wall-clock ms with sub-ms resolution, comparable across threads. */
export const nowMs = () => performance.timeOrigin + performance.now();

/** The longest decode-loop run on cuda, taken when nothing needs a boundary sooner (a static batch, no one waiting). */
export const DEFAULT_CUDA_DECODE_CHUNK_STEPS = 128;
/** The run length on cuda while requests wait for a row or an interactive request decodes. */
export const DEFAULT_CUDA_DECODE_CHUNK_MIN_STEPS = 32;
/**
 * A prefill run's fixed cost in prompt tokens where the KV cache is in host memory: on cuda a 7B prefill run reads
 * every weight once and launches every layer's kernels whatever its size, about what a few hundred tokens of
 * arithmetic cost.
 */
export const DEFAULT_PREFILL_RUN_COST_TOKENS = 256;

/**
 * Opens the session on the requested EP, or for 'auto' on the first of cuda, webgpu, cpu that loads (each refusal
 * is kept as the reason the next one was taken).
 */
async function openWithProvider(options: EngineCoreOptions): Promise<{ model: ModelSession; decodeChunkSteps: number; reason: string }> {
  const open = async (executionProvider: ExecutionProviderName) => {
    const resolved = { ...options, executionProvider };
    const decodeChunkSteps = options.decodeChunkSteps ?? defaultDecodeChunkSteps(resolved);
    const cudaFpaIntbGemm = usesCudaFpaIntbGemm(resolved);
    return { model: await openModelSession({ ...resolved, decodeLoop: decodeChunkSteps > 1, cudaFpaIntbGemm }), decodeChunkSteps };
  };
  if (options.executionProvider !== 'auto') {
    const opened = await open(options.executionProvider);
    return { ...opened, reason: `${options.executionProvider} as requested` };
  }
  const manifest = readManifest(options.modelDir);
  const facts = backendFacts();
  const skipped: string[] = [];
  for (const candidate of ['cuda', 'webgpu'] as const) {
    const unavailable = providerUnavailableReason(candidate, facts) ?? (candidate === 'cuda' && manifest.activations === 'fp32'
      ? 'the model has fp32 activations and the cuda attention kernel is fp16 only (convert with --target gpu)'
      : undefined);
    if (unavailable) {
      skipped.push(`${candidate}: ${unavailable}`);
      continue;
    }
    try {
      const opened = await open(candidate);
      return { ...opened, reason: skipped.length === 0 ? `auto: ${candidate} loaded` : `auto: ${candidate} loaded (${skipped.join('; ')})` };
    } catch (error) {
      skipped.push(`${candidate}: ${(error as Error).message}`);
    }
  }
  const opened = await open('cpu');
  return { ...opened, reason: `auto: cpu, no GPU provider loaded (${skipped.join('; ')})` };
}

export function usesCudaFpaIntbGemm(options: Pick<EngineCoreOptions, 'cudaFpaIntbGemm' | 'slots' | 'dequantizeWeights'> & { executionProvider: ExecutionProviderName }): boolean {
  if (options.executionProvider !== 'cuda' || options.dequantizeWeights === true) return false;
  const choice = options.cudaFpaIntbGemm ?? 'auto';
  return choice === 'on' || (choice === 'auto' && options.slots >= CUDA_FPA_INTB_AUTO_MIN_SLOTS);
}

function defaultDecodeChunkSteps(options: EngineCoreOptions & { executionProvider: ExecutionProviderName }): number {
  if (options.executionProvider !== 'cuda') return 1;
  const placement = options.kvPlacement ?? 'auto';
  if (placement !== 'auto' && placement !== 'host') return 1;
  return readManifest(options.modelDir).files.decodeLoop ? DEFAULT_CUDA_DECODE_CHUNK_STEPS : 1;
}

export function defaultPrefillChunkTokens(placement: KvPlacement, slots: number, decodeChunkSteps = 1): number {
  switch (placement) {
    case 'host':
      // A decode-loop run lasts many steps, so one prefill between runs can take every newcomer of a full batch with
      // typical prompts (a GPU prefills thousands of tokens in about one step's time; a batch split over two
      // prefills would decode half empty for a whole run). One step per run: bounds the stall a newcomer's prefill
      // imposes on the decoding rows (cpu and cuda).
      return decodeChunkSteps > 1 ? Math.max(2048, slots * 128) : 512;
    case 'device-merge':
      // A GPU prefills thousands of tokens in about the time of a decode step; bounded for memory: WebGPU does not reuse
      // intermediate buffers within a run, so one 16k-token prefill peaked at 15 GiB on the H100 (docs/benchmarks.md).
      return Math.max(2048, slots * 32);
    case 'device':
      // The first run of a batch holds every row padded to its longest prompt: slots x 128 lets typical prompts in.
      return slots * 128;
  }
}

export const DEFAULT_JOIN_MAX_WAIT_STEPS = 4;

export function defaultJoinGroup(slots: number): number {
  return Math.max(1, Math.floor(slots / 8));
}

export class EngineCore {
  private scheduler: Scheduler;
  private runner: ForwardRunner;
  private readonly sinks = new Map<string, CoreRequestSink>();
  private pumping = false;
  private closed = false;
  /** Set when recovery after a failed run failed: the engine serves nothing more. */
  private broken: EngineClosedError | undefined;
  /** Told once when the engine breaks (the dispatcher forwards it to the owner). */
  onBroken: (error: EngineClosedError) => void = () => undefined;

  private constructor(
    private readonly options: EngineCoreOptions,
    private readonly model: ModelSession,
    private readonly tokenizer: Tokenizer,
    readonly info: EngineInfo,
    runner: ForwardRunner,
  ) {
    this.runner = runner;
    this.scheduler = this.createScheduler();
  }

  static async open(options: EngineCoreOptions): Promise<EngineCore> {
    validateEngineOptions(options);
    const started = nowMs();
    const { model, decodeChunkSteps, reason } = await openWithProvider(options);
    const tokenizer = Tokenizer.fromModelDir(options.modelDir);
    const { manifest } = model;
    const info: EngineInfo = {
      executionProvider: model.executionProvider,
      requestedExecutionProvider: options.executionProvider,
      executionProviderReason: reason,
      kvPlacement: model.kvPlacement,
      cudaFpaIntbGemm: usesCudaFpaIntbGemm({ ...options, executionProvider: model.executionProvider }),
      dequantizedWeights: model.dequantizedWeights,
      warmUp: { runs: 0, ms: 0 },
      decodeChunkSteps,
      decodeChunkMinSteps: Math.min(options.decodeChunkMinSteps ?? (options.decodeChunkSteps === undefined ? DEFAULT_CUDA_DECODE_CHUNK_MIN_STEPS : decodeChunkSteps), decodeChunkSteps),
      contextLength: Math.min(manifest.shape.contextLength, options.maxSequenceLength ?? Infinity),
      vocabSize: manifest.shape.vocabSize,
      eosId: manifest.tokens.eos,
      slots: options.slots,
      prefillChunkTokens: 0,
      joinGroup: options.joinGroup ?? defaultJoinGroup(options.slots),
      // A decode-loop run is many steps long: a newcomer joins at the next run rather than waiting for company.
      joinMaxWaitSteps: options.joinMaxWaitSteps ?? (decodeChunkSteps > 1 ? 0 : DEFAULT_JOIN_MAX_WAIT_STEPS),
      warnings: model.warnings,
      loadMs: 0,
      threadId,
    };
    const runner = await createRunner(model, options.slots, info.contextLength, info.warnings);
    // After createRunner: it may change the placement (device-merge falls back to device), and the budget follows it.
    info.kvPlacement = model.kvPlacement;
    info.prefillChunkTokens = options.prefillChunkTokens ?? defaultPrefillChunkTokens(model.kvPlacement, options.slots, decodeChunkSteps);
    const runCost = options.prefillRunCostTokens ?? (model.kvPlacement === 'host' ? DEFAULT_PREFILL_RUN_COST_TOKENS : undefined);
    if (runCost !== undefined) info.prefillRunCostTokens = runCost;
    if (warmsUpPrefill(options.prefillWarmUp, info.cudaFpaIntbGemm)) {
      const warmUpStarted = nowMs();
      const shapes = prefillWarmUpShapes(options.slots, info.prefillChunkTokens, info.contextLength);
      try {
        await warmUpPrefill(runner, shapes, info.eosId);
      } catch (error) {
        runner.dispose();
        await model.session.release();
        throw error;
      }
      info.warmUp = { runs: shapes.length, ms: nowMs() - warmUpStarted };
    }
    info.loadMs = nowMs() - started;
    return new EngineCore(options, model, tokenizer, info, runner);
  }

  /** Validates and enqueues; throws (InvalidGenerationParamError naming the field) for a bad request. */
  submit(request: GenerationRequest, sink: CoreRequestSink, submittedAt = nowMs()): void {
    if (this.closed) throw this.broken ?? new EngineClosedError('the engine is closed');
    if (!request || typeof request !== 'object') throw new InvalidGenerationParamError('request', 'must be an object');
    if (typeof request.id !== 'string' || request.id.length === 0) throw new InvalidGenerationParamError('id', 'must be a non-empty string');
    if (typeof request.prompt !== 'string') throw new InvalidGenerationParamError('prompt', 'must be a string');
    if (this.sinks.has(request.id)) throw new DuplicateRequestError(`request ${request.id} is already in flight`);
    const contextLength = this.info.contextLength;
    const params = resolveGenerationParams(request.params, { contextLength });
    const promptIds = fitPromptToContext(request.promptIds === undefined ? this.tokenizer.encode(request.prompt) : this.checkPromptIds(request.promptIds), params, contextLength);
    this.sinks.set(request.id, sink);
    this.scheduler.enqueue(
      { id: request.id, promptIds, promptText: request.prompt, params, interactive: request.interactive === true, fallbackSeed: randomSeed(), submittedAt },
      {
        onToken: sink.onToken ? (event) => sink.onToken?.(event) : undefined,
        onDone: (result) => {
          this.sinks.delete(result.id);
          sink.onDone(result);
        },
      },
    );
    this.kick();
  }

  private checkPromptIds(ids: unknown): number[] {
    if (!Array.isArray(ids)) throw new InvalidGenerationParamError('promptIds', 'must be an array of token ids');
    ids.forEach((id, index) => {
      if (!Number.isInteger(id) || id < 0 || id >= this.info.vocabSize) {
        throw new InvalidGenerationParamError(`promptIds[${index}]`, `must be a token id in 0..${this.info.vocabSize - 1}, got ${String(id)}`);
      }
    });
    return ids as number[];
  }

  cancel(id: string): boolean {
    return this.scheduler.cancel(id);
  }

  stats(): EngineStats {
    return this.scheduler.stats();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.failAll(new EngineClosedError('the engine was closed before the request finished'));
    while (this.pumping) await new Promise((resolve) => setImmediate(resolve));
    this.runner.dispose();
    await this.model.session.release();
  }

  private kick(): void {
    if (this.pumping) return;
    this.pumping = true;
    setImmediate(() => void this.pump());
  }

  private async pump(): Promise<void> {
    try {
      while (!this.closed && !this.scheduler.idle) {
        await this.scheduler.step();
        // Let the owner's messages (submit, cancel, stats) in between steps.
        await new Promise((resolve) => setImmediate(resolve));
      }
    } catch (error) {
      // A failed model run leaves the batch in an unknown state: fail what is in flight and start clean.
      const cause = error instanceof Error ? error : new Error(String(error));
      this.failAll(cause);
      await this.recover(cause);
    } finally {
      this.pumping = false;
    }
    if (!this.closed && !this.scheduler.idle) this.kick();
  }

  /**
   * A fresh runner and scheduler after a failed run. If that fails too, the engine is broken for good: it says so to
   * every later call (EngineClosedError), so its owner stops feeding it and replaces it, instead of the failure
   * escaping the pump and killing the thread with nothing said.
   */
  private async recover(cause: Error): Promise<void> {
    try {
      this.runner.dispose();
      this.runner = await createRunner(this.model, this.options.slots, this.info.contextLength);
      this.scheduler = this.createScheduler();
    } catch (error) {
      this.broken = new EngineClosedError(`the engine could not recover from a failed model run (${cause.message}): ${(error as Error).message}`);
      this.closed = true;
      this.failAll(this.broken);
      this.onBroken(this.broken);
    }
  }

  private failAll(error: Error): void {
    const sinks = [...this.sinks.values()];
    this.sinks.clear();
    for (const sink of sinks) sink.onError(error);
  }

  private createScheduler(): Scheduler {
    return new Scheduler(this.runner, {
      prefillChunkTokens: this.info.prefillChunkTokens,
      prefillRunCostTokens: this.info.prefillRunCostTokens,
      joinGroup: this.info.joinGroup,
      joinMaxWaitSteps: this.info.joinMaxWaitSteps,
      admission: this.options.admission ?? 'continuous',
      forceFullLogits: this.options.forceFullLogits ?? false,
      decodeChunkSteps: this.info.decodeChunkSteps,
      decodeChunkMinSteps: this.info.decodeChunkMinSteps,
      eosId: this.info.eosId,
      decoder: { decode: (ids) => this.tokenizer.decode(ids, { skipSpecialTokens: true }) },
      now: nowMs,
    });
  }
}

async function createRunner(model: ModelSession, slots: number, contextLength: number, warnings: string[] = []): Promise<ForwardRunner> {
  switch (model.kvPlacement) {
    case 'host':
      return new HostKvRunner(model, slots, contextLength);
    case 'device':
      return new DeviceKvRunner(model, slots, contextLength);
    case 'device-merge':
      try {
        return await MergeKvRunner.create(model, slots, contextLength);
      } catch (error) {
        warnings.push(`The KV merge graph could not be loaded (${(error as Error).message}); newcomers join through decode (kvPlacement 'device').`);
        model.kvPlacement = 'device';
        return new DeviceKvRunner(model, slots, contextLength);
      }
  }
}

function validateEngineOptions(options: EngineCoreOptions): void {
  const fail = (field: string, reason: string) => {
    throw new EngineConfigurationError(`invalid engine option ${field}: ${reason}`);
  };
  if (!options.modelDir) fail('modelDir', 'is required');
  if (!(EXECUTION_PROVIDER_CHOICES as readonly string[]).includes(options.executionProvider)) {
    fail('executionProvider', `must be one of ${EXECUTION_PROVIDER_CHOICES.join(', ')}, got ${String(options.executionProvider)}`);
  }
  if (!Number.isInteger(options.slots) || options.slots < 1 || options.slots > 1024) fail('slots', `must be an integer in 1..1024, got ${String(options.slots)}`);
  if (options.prefillChunkTokens !== undefined && (!Number.isInteger(options.prefillChunkTokens) || options.prefillChunkTokens < 1)) {
    fail('prefillChunkTokens', 'must be a positive integer');
  }
  if (options.joinGroup !== undefined && (!Number.isInteger(options.joinGroup) || options.joinGroup < 1 || options.joinGroup > options.slots)) {
    fail('joinGroup', `must be an integer in 1..slots (${options.slots})`);
  }
  if (options.joinMaxWaitSteps !== undefined && (!Number.isInteger(options.joinMaxWaitSteps) || options.joinMaxWaitSteps < 0)) {
    fail('joinMaxWaitSteps', 'must be a non-negative integer');
  }
  if (options.maxSequenceLength !== undefined && (!Number.isInteger(options.maxSequenceLength) || options.maxSequenceLength < 2)) {
    fail('maxSequenceLength', 'must be an integer >= 2');
  }
  if (options.deviceId !== undefined && (!Number.isInteger(options.deviceId) || options.deviceId < 0)) fail('deviceId', 'must be a non-negative integer');
  if (options.prefillRunCostTokens !== undefined && (!Number.isInteger(options.prefillRunCostTokens) || options.prefillRunCostTokens < 0)) {
    fail('prefillRunCostTokens', `must be a non-negative integer, got ${String(options.prefillRunCostTokens)}`);
  }
  if (options.decodeChunkMinSteps !== undefined && (!Number.isInteger(options.decodeChunkMinSteps) || options.decodeChunkMinSteps < 1)) {
    fail('decodeChunkMinSteps', `must be a positive integer, got ${String(options.decodeChunkMinSteps)}`);
  }
  if (options.cudaFpaIntbGemm !== undefined && !(SWITCH_CHOICES as readonly string[]).includes(options.cudaFpaIntbGemm)) {
    fail('cudaFpaIntbGemm', `must be one of ${SWITCH_CHOICES.join(', ')}, got ${String(options.cudaFpaIntbGemm)}`);
  }
  if (options.dequantizeWeights !== undefined && typeof options.dequantizeWeights !== 'boolean') {
    fail('dequantizeWeights', `must be true or false, got ${String(options.dequantizeWeights)}`);
  }
  if (options.prefillWarmUp !== undefined && !(SWITCH_CHOICES as readonly string[]).includes(options.prefillWarmUp)) {
    fail('prefillWarmUp', `must be one of ${SWITCH_CHOICES.join(', ')}, got ${String(options.prefillWarmUp)}`);
  }
  if (options.decodeChunkSteps !== undefined) {
    if (!Number.isInteger(options.decodeChunkSteps) || options.decodeChunkSteps < 1 || options.decodeChunkSteps > 1024) {
      fail('decodeChunkSteps', `must be an integer in 1..1024, got ${String(options.decodeChunkSteps)}`);
    }
    const placement = options.kvPlacement ?? 'auto';
    if (options.decodeChunkSteps > 1 && placement !== 'auto' && placement !== 'host') {
      fail('decodeChunkSteps', `a decode loop keeps the KV cache in host memory between runs: kvPlacement ${placement} cannot use it`);
    }
  }
}
