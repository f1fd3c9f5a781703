// The owner's handle on the engine. By default the engine runs in a worker_thread (onnxruntime-node's run() blocks
// the thread that calls it, and the owner's event loop must stay free); `inProcess` runs the very same core and
// message handling in the caller's thread (tests, bench). This file does not load onnxruntime-node.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { assertModelIntact, readManifest } from '@app/model';
import type { EngineInfo, EngineOptions, EngineStats, GenerationRequest, GenerationResult, TokenEvent } from './api';
import { EngineClosedError, EngineConfigurationError, fromSerializedError, InvalidGenerationParamError } from './errors';
import { resolveGenerationParams } from './params';
import type { FromEngine, ToEngine } from './thread/messages';

interface Pending {
  resolve(result: GenerationResult): void;
  reject(error: Error): void;
  onToken?: (event: TokenEvent) => void;
}

type Send = (message: ToEngine) => void;

/** Where the compiled worker script lives: next to this module in dist/. */
export const ENGINE_THREAD_FILE = path.join(__dirname, 'thread', 'engine-thread.js');

export class GenerationEngine {
  private readonly pending = new Map<string, Pending>();
  private readonly statsWaiters = new Map<number, (stats: EngineStats) => void>();
  private nextTicket = 0;
  private closing: Promise<void> | undefined;
  private closedResolve: (() => void) | undefined;
  private closedError: Error | undefined;
  private send: Send = () => {
    throw new EngineClosedError('the engine is not started');
  };
  private stop: () => Promise<void> = async () => {};
  info!: EngineInfo;

  private constructor(private readonly options: EngineOptions) {}

  /** Loads the model and returns once the engine is ready (or rejects with why it could not start). */
  static async start(options: EngineOptions): Promise<GenerationEngine> {
    // A truncated, missing or edited file says "re-convert" here instead of failing inside onnxruntime.
    try {
      assertModelIntact(options.modelDir, readManifest(options.modelDir));
    } catch (error) {
      throw new EngineConfigurationError((error as Error).message, { cause: error });
    }
    const engine = new GenerationEngine(options);
    engine.info = options.inProcess ? await engine.startInProcess() : await engine.startThread();
    for (const warning of engine.info.warnings) options.onWarning?.(warning);
    return engine;
  }

  /**
   * Generates for one prompt. Resolves with the result (also for a cancelled request: finishReason 'cancelled');
   * rejects for a bad request (InvalidGenerationParamError naming the field) or when the engine fails or closes.
   */
  submit(request: GenerationRequest, onToken?: (event: TokenEvent) => void): Promise<GenerationResult> {
    if (this.closedError || this.closing) return Promise.reject(this.closedError ?? new EngineClosedError('the engine is closing'));
    try {
      if (!request || typeof request.id !== 'string' || request.id.length === 0) {
        throw new InvalidGenerationParamError('id', 'must be a non-empty string');
      }
      // Fail fast here for parameter errors; the engine checks again, with the prompt's token count.
      resolveGenerationParams(request.params, { contextLength: this.info.contextLength });
    } catch (error) {
      return Promise.reject(error);
    }
    if (this.pending.has(request.id)) return Promise.reject(new Error(`request ${request.id} is already in flight`));
    return new Promise<GenerationResult>((resolve, reject) => {
      this.pending.set(request.id, { resolve, reject, onToken });
      this.send({ type: 'submit', request, stream: onToken !== undefined, submittedAt: performance.timeOrigin + performance.now() });
    });
  }

  /** Ends a request early; its promise resolves with what was generated so far (finishReason 'cancelled'). */
  cancel(id: string): void {
    if (this.pending.has(id)) this.send({ type: 'cancel', id });
  }

  stats(): Promise<EngineStats> {
    if (this.closedError) return Promise.reject(this.closedError);
    const ticket = this.nextTicket++;
    return new Promise((resolve) => {
      this.statsWaiters.set(ticket, resolve);
      this.send({ type: 'stats', ticket });
    });
  }

  /** Stops the engine; requests still pending reject with EngineClosedError. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      if (!this.closedError) {
        const closed = new Promise<void>((resolve) => (this.closedResolve = resolve));
        this.send({ type: 'close' });
        await closed;
      }
      await this.stop();
      this.failPending(new EngineClosedError('the engine was closed'));
    })();
    return this.closing;
  }

  // --- message handling (both modes) ---

  private deliver(message: FromEngine): void {
    switch (message.type) {
      case 'token':
        this.pending.get(message.event.id)?.onToken?.(message.event);
        return;
      case 'result': {
        const pending = this.pending.get(message.result.id);
        this.pending.delete(message.result.id);
        pending?.resolve(message.result);
        return;
      }
      case 'rejected': {
        const pending = this.pending.get(message.id);
        this.pending.delete(message.id);
        pending?.reject(fromSerializedError(message.error));
        return;
      }
      case 'stats':
        this.statsWaiters.get(message.ticket)?.(message.stats);
        this.statsWaiters.delete(message.ticket);
        return;
      case 'broken':
        this.failPending(fromSerializedError(message.error));
        return;
      case 'closed':
        this.closedResolve?.();
        return;
      case 'ready':
      case 'start-failed':
        return;
    }
  }

  private failPending(error: Error): void {
    this.closedError ??= error;
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const entry of pending) entry.reject(error);
  }

  private coreOptions(): Omit<EngineOptions, 'onWarning' | 'inProcess'> {
    const { onWarning: _onWarning, inProcess: _inProcess, ...rest } = this.options;
    return rest;
  }

  private async startInProcess(): Promise<EngineInfo> {
    // Loaded on demand: importing @app/engine must not load onnxruntime-node.
    const [{ EngineCore }, { dispatchToCore, reportBreakdown }] = await Promise.all([import('./core/engine-core'), import('./core/dispatch')]);
    const core = await EngineCore.open(this.coreOptions());
    // Deliver on a later tick, as a thread would: callers never see re-entrant callbacks inside submit().
    const post = (message: FromEngine) => setImmediate(() => this.deliver(message));
    reportBreakdown(core, post);
    this.send = (message) => dispatchToCore(core, message, post);
    return core.info;
  }

  private startThread(): Promise<EngineInfo> {
    if (!fs.existsSync(ENGINE_THREAD_FILE)) {
      return Promise.reject(
        new Error(
          `engine thread script ${ENGINE_THREAD_FILE} does not exist: the worker_thread runs compiled JavaScript; ` +
            'run `npm run build` and use the engine from dist/, or start it with inProcess: true',
        ),
      );
    }
    const worker = new Worker(ENGINE_THREAD_FILE, { workerData: this.coreOptions() });
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    this.send = (message) => worker.postMessage(message);
    this.stop = async () => {
      // The thread ends by itself once it has released the session; terminate only if it hangs.
      const timeout = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), 5000).unref());
      if ((await Promise.race([exited, timeout])) === 'timeout') await worker.terminate();
    };
    return new Promise<EngineInfo>((resolve, reject) => {
      let ready = false;
      worker.on('message', (message: FromEngine) => {
        if (message.type === 'ready') {
          ready = true;
          resolve(message.info);
        } else if (message.type === 'start-failed') {
          reject(fromSerializedError(message.error));
        } else {
          this.deliver(message);
        }
      });
      worker.on('error', (error) => {
        if (!ready) reject(error);
        this.failPending(new EngineClosedError(`the engine thread failed: ${error.message}`));
        this.closedResolve?.();
      });
      worker.on('exit', (code) => {
        if (!ready) reject(new EngineClosedError(`the engine thread exited (code ${code}) before it was ready`));
        this.failPending(new EngineClosedError(this.closing ? 'the engine was closed' : `the engine thread exited (code ${code})`));
        this.closedResolve?.();
      });
    });
  }
}
