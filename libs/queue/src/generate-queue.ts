import { Queue, type JobsOptions } from 'bullmq';
import { GENERATE_QUEUE, PRIORITY, generateJobId, type GenerateJobData } from '@app/contracts';
import { queueConnectionFor, type OwnedConnection, type QueueLocation } from './connection';
import { DEFAULT_ATTEMPTS, defaultGenerateJobOptions } from './job-options';

export interface GenerateQueueOptions extends QueueLocation {
  attempts?: number;
  /** Connection errors of the queue's Redis client (it reconnects by itself). */
  onError?: (error: Error) => void;
}

export interface GenerateQueueCounts {
  waiting: number;
  prioritized: number;
  active: number;
  delayed: number;
  completed: number;
  failed: number;
}

/** addBulk in chunks: one huge MULTI for a 50k-line batch would block Redis for too long. */
const ENQUEUE_CHUNK = 1000;
const REMOVE_CONCURRENCY = 200;

export type GenerateQueueBackend = Queue<GenerateJobData>;

/** The `generate` queue as the api sees it: enqueue a batch's prompts, take back the ones not started, count. */
export class GenerateQueue {
  readonly queue: GenerateQueueBackend;
  private readonly owned: OwnedConnection;

  constructor(options: GenerateQueueOptions) {
    this.owned = queueConnectionFor(options);
    this.queue = new Queue<GenerateJobData>(GENERATE_QUEUE, {
      connection: this.owned.connection,
      prefix: options.prefix,
      defaultJobOptions: defaultGenerateJobOptions(options.attempts ?? DEFAULT_ATTEMPTS),
    });
    // Without a listener BullMQ prints every connection error with its stack; the caller reports Redis outages.
    if (options.onError) this.queue.on('error', options.onError);
  }

  /**
   * One job per prompt, id `<batchId>-<index>`: BullMQ ignores a job whose id already exists, so enqueueing the same
   * items twice (an api retry after a timeout) never runs a prompt twice.
   */
  async enqueueItems(items: GenerateJobData[]): Promise<void> {
    for (let start = 0; start < items.length; start += ENQUEUE_CHUNK) {
      const chunk = items.slice(start, start + ENQUEUE_CHUNK);
      await this.queue.addBulk(chunk.map((data) => ({ name: data.kind, data, opts: jobOptionsFor(data) })));
    }
  }

  /**
   * Removes the batch's jobs that no worker holds (waiting, prioritized, delayed for a retry). Active jobs are
   * locked and stay: their worker sees the batch's cancelled/expired state and stops them. Returns how many were
   * removed.
   */
  async removePendingItems(batchId: string, itemCount: number): Promise<number> {
    let removed = 0;
    for (let start = 0; start < itemCount; start += REMOVE_CONCURRENCY) {
      const end = Math.min(itemCount, start + REMOVE_CONCURRENCY);
      const codes = await Promise.all(
        Array.from({ length: end - start }, (_, i) => this.removeIfNotActive(generateJobId(batchId, start + i))),
      );
      removed += codes.filter(Boolean).length;
    }
    return removed;
  }

  async counts(): Promise<GenerateQueueCounts> {
    const c = await this.queue.getJobCounts('waiting', 'prioritized', 'active', 'delayed', 'completed', 'failed');
    return {
      waiting: c.waiting ?? 0,
      prioritized: c.prioritized ?? 0,
      active: c.active ?? 0,
      delayed: c.delayed ?? 0,
      completed: c.completed ?? 0,
      failed: c.failed ?? 0,
    };
  }

  /** Number of worker connections BullMQ sees on the queue (each worker process registers one). */
  async workerCount(): Promise<number> {
    return this.queue.getWorkersCount();
  }

  async close(): Promise<void> {
    await this.queue.close();
    await this.owned.close();
  }

  private async removeIfNotActive(jobId: string): Promise<boolean> {
    const state = await this.queue.getJobState(jobId);
    if (state === 'active' || state === 'completed' || state === 'failed' || state === 'unknown') return false;
    return (await this.queue.remove(jobId)) === 1;
  }
}

export function jobOptionsFor(data: GenerateJobData): JobsOptions {
  return {
    jobId: generateJobId(data.batchId, data.index),
    priority: data.kind === 'online' ? PRIORITY.online : PRIORITY.batch,
  };
}
