import { generateJobId, type GenerateJobData } from '@app/contracts';
import { GenerateQueue, bullBoardAdapters, type GenerateQueueCounts } from '@app/queue';

// The api's use of the generate queue. Taking back not-started jobs item by item is here, not in libs/queue,
// because the api must know WHICH items it took back (it records them as cancelled/expired so the batch can finish).

const CONCURRENCY = 200;

export class JobQueue {
  constructor(readonly generate: GenerateQueue) {}

  enqueue(jobs: GenerateJobData[]): Promise<void> {
    return this.generate.enqueueItems(jobs);
  }

  /**
   * Enqueues items again (retry-failed): their earlier jobs still sit in BullMQ's failed set under the same job id,
   * which would make addBulk ignore the new ones, so those are removed first.
   */
  async requeue(jobs: GenerateJobData[]): Promise<void> {
    await this.forEachChunk(jobs, async (job) => {
      await this.generate.queue.remove(generateJobId(job.batchId, job.index));
    });
    await this.generate.enqueueItems(jobs);
  }

  /**
   * Removes the jobs of these items that no worker holds. Returns the indices that will not run (removed, or with no
   * job at all); items whose job is active are left to their worker, which records them itself.
   */
  async takeBackNotStarted(batchId: string, indices: number[]): Promise<number[]> {
    const takenBack: number[] = [];
    await this.forEachChunk(indices, async (index) => {
      const jobId = generateJobId(batchId, index);
      const state = await this.generate.queue.getJobState(jobId);
      if (state === 'active') return;
      if (state === 'unknown' || (await this.generate.queue.remove(jobId)) === 1) takenBack.push(index);
    });
    return takenBack.sort((a, b) => a - b);
  }

  counts(): Promise<GenerateQueueCounts> {
    return this.generate.counts();
  }

  dashboardAdapters(): ReturnType<typeof bullBoardAdapters> {
    return bullBoardAdapters(this.generate);
  }

  close(): Promise<void> {
    return this.generate.close();
  }

  private async forEachChunk<T>(values: T[], run: (value: T) => Promise<void>): Promise<void> {
    for (let start = 0; start < values.length; start += CONCURRENCY) {
      await Promise.all(values.slice(start, start + CONCURRENCY).map(run));
    }
  }
}

export const JOB_QUEUE = Symbol('JOB_QUEUE');
