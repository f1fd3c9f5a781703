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
/** Job-state reads and removals in flight at once. */
const CONCURRENCY = 200;

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
   * items twice (an api retry after a timeout, the recovery of an interrupted creation) never runs a prompt twice.
   */
  async enqueue(jobs: GenerateJobData[]): Promise<void> {
    for (let start = 0; start < jobs.length; start += ENQUEUE_CHUNK) {
      const chunk = jobs.slice(start, start + ENQUEUE_CHUNK);
      await this.queue.addBulk(chunk.map((data) => ({ name: data.kind, data, opts: jobOptionsFor(data) })));
    }
  }

  /**
   * Enqueues items again (retry-failed): their earlier jobs still sit in BullMQ's failed set under the same job id,
   * which would make addBulk ignore the new ones, so those are removed first.
   */
  async requeue(jobs: GenerateJobData[]): Promise<void> {
    await forEachChunk(jobs, async (job) => {
      await this.queue.remove(generateJobId(job.batchId, job.index));
    });
    await this.enqueue(jobs);
  }

  /**
   * Removes the jobs of these items that no worker holds (waiting, prioritized, delayed for a retry). Returns the
   * indices that will not run (removed, or with no job at all); items whose job is active are left to their worker,
   * which reports them itself.
   */
  async takeBackNotStarted(batchId: string, indices: number[]): Promise<number[]> {
    const takenBack: number[] = [];
    await forEachChunk(indices, async (index) => {
      const jobId = generateJobId(batchId, index);
      const state = await this.queue.getJobState(jobId);
      if (state === 'active') return;
      if (state === 'unknown' || (await this.queue.remove(jobId)) === 1) takenBack.push(index);
    });
    return takenBack.sort((a, b) => a - b);
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
}

async function forEachChunk<T>(values: T[], run: (value: T) => Promise<void>): Promise<void> {
  for (let start = 0; start < values.length; start += CONCURRENCY) {
    await Promise.all(values.slice(start, start + CONCURRENCY).map(run));
  }
}

export function jobOptionsFor(data: GenerateJobData): JobsOptions {
  return {
    jobId: generateJobId(data.batchId, data.index),
    priority: data.kind === 'online' ? PRIORITY.online : PRIORITY.batch,
  };
}
