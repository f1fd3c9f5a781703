import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import type { GenerateQueue } from './generate-queue';

/**
 * Bull Board adapters for the api's dashboard (the api mounts them behind its own auth). Read-only: emptying,
 * cleaning or obliterating the queue, or removing a job, would take jobs away behind the store's back and leave
 * their batches unfinished forever; batches are cancelled through the api, which accounts for every item.
 */
export function bullBoardAdapters(queue: GenerateQueue): BullMQAdapter[] {
  return [new BullMQAdapter(queue.queue, { readOnlyMode: true, description: 'one job per prompt (read-only: cancel batches through the api)' })];
}
