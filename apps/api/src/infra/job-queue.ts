import type { GenerateQueue } from '@app/queue';

// The api reaches BullMQ only through libs/queue's GenerateQueue (enqueue, requeue, take back, count, dashboard).

export type JobQueue = GenerateQueue;

export const JOB_QUEUE = Symbol('JOB_QUEUE');
