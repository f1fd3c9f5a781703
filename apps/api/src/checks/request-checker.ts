import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { Inject, Injectable, Logger, type OnApplicationShutdown } from '@nestjs/common';
import { API_CONFIG, type ApiConfig } from '../config/api-config';
import { SERVED_MODEL, type ServedModel } from '../model/served-model';
import type { InputLimits } from '../batches/batch-input';
import type { CheckThreadData } from './check-thread';
import { refusalOf, runCheck, type CheckOutcome, type CheckTask, type CheckValue } from './request-checks';

export const CHECK_THREAD_FILE = join(__dirname, 'check-thread.js');

/**
 * The check threads' young generation, whatever the process's V8 flags say: the api runs with a small one
 * (scripts/api-command.js) for its short-lived request data, but a thread that parses a 10,000-line file allocates fast
 * and keeps V8's usual 16 MiB semi-spaces (young generation = 3 semi-spaces).
 */
const CHECK_THREAD_YOUNG_GENERATION_MB = 48;

interface Waiting {
  id: number;
  task: CheckTask;
  resolve: (outcome: CheckOutcome) => void;
  reject: (error: Error) => void;
}

interface Thread {
  worker: Worker;
  running: Waiting | null;
}

/**
 * A raw body (or each block of a chunked one, or an uploaded file's bytes) that owns its whole ArrayBuffer moves to the
 * thread without a copy (pooled small ones are copied).
 */
function transferable(task: CheckTask): ArrayBuffer[] {
  const body = 'body' in task ? task.body : 'content' in task ? task.content : undefined;
  const parts = Array.isArray(body) ? body : [body];
  const owned = parts.filter((part): part is Uint8Array => part instanceof Uint8Array && part.byteOffset === 0 && part.byteLength === part.buffer.byteLength);
  const buffers = owned.map((part) => part.buffer).filter((buffer): buffer is ArrayBuffer => buffer instanceof ArrayBuffer);
  // A buffer listed twice cannot be transferred: each body part has its own.
  return new Set(buffers).size === buffers.length ? buffers : [];
}

/**
 * Runs request checks (parsing, rendering, tokenizing) on FALCONQ_CHECK_THREADS worker threads, so a large batch or
 * a hostile template never stalls the event loop that answers every other request (/health included). Tasks wait
 * in order for a free thread. With 0 threads, or where the compiled thread file is missing (tests running sources),
 * checks run inline.
 */
@Injectable()
export class RequestChecker implements OnApplicationShutdown {
  private readonly logger = new Logger('RequestChecker');
  private readonly threads: Thread[] = [];
  private readonly queue: Waiting[] = [];
  private readonly limits: InputLimits;
  private nextId = 0;
  private closing = false;

  constructor(@Inject(API_CONFIG) private readonly config: ApiConfig, @Inject(SERVED_MODEL) private readonly model: ServedModel) {
    this.limits = { maxLines: config.limits.maxLines, maxRenderedBytes: config.limits.maxBodyBytes };
    const count = existsSync(CHECK_THREAD_FILE) ? config.checkThreads : 0;
    if (count === 0 && config.checkThreads > 0) this.logger.warn(`${CHECK_THREAD_FILE} is missing: request checks run on the event loop`);
    for (let i = 0; i < count; i++) this.threads.push(this.spawn());
  }

  /** The checked request, or the ApiError that refuses it. */
  async check<T extends CheckTask>(task: T): Promise<CheckValue<T>> {
    const outcome = this.threads.length === 0 ? runCheck(task, this.model, this.limits) : await this.dispatch(task);
    if (!outcome.ok) throw refusalOf(outcome);
    return outcome.value as CheckValue<T>;
  }

  async onApplicationShutdown(): Promise<void> {
    this.closing = true;
    await Promise.all(this.threads.map((thread) => thread.worker.terminate()));
  }

  private dispatch(task: CheckTask): Promise<CheckOutcome> {
    return new Promise((resolve, reject) => {
      this.queue.push({ id: this.nextId++, task, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    for (const thread of this.threads) {
      if (thread.running || this.queue.length === 0) continue;
      const next = this.queue.shift()!;
      thread.running = next;
      thread.worker.postMessage({ id: next.id, task: next.task }, transferable(next.task));
    }
  }

  private spawn(): Thread {
    const data: CheckThreadData = { modelDir: this.config.modelDir, modelName: this.config.modelName, limits: this.limits };
    const thread: Thread = { worker: new Worker(CHECK_THREAD_FILE, { workerData: data, resourceLimits: { maxYoungGenerationSizeMb: CHECK_THREAD_YOUNG_GENERATION_MB } }), running: null };
    thread.worker.on('message', (message: { id: number; outcome?: CheckOutcome; crash?: string }) => {
      const running = thread.running;
      thread.running = null;
      if (running && running.id === message.id) {
        if (message.outcome) running.resolve(message.outcome);
        else running.reject(new Error(`request check failed: ${message.crash}`));
      }
      this.pump();
    });
    thread.worker.on('error', (error) => this.logger.error(`request-check thread failed: ${error.stack ?? error.message}`));
    thread.worker.on('exit', (code) => {
      if (this.closing) return;
      // A thread that died (out of memory on a huge file, a bug) fails its task, and another takes its place.
      thread.running?.reject(new Error(`request-check thread exited with code ${code}`));
      const index = this.threads.indexOf(thread);
      if (index >= 0) this.threads[index] = this.spawn();
      this.pump();
    });
    thread.worker.unref();
    return thread;
  }
}
