import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import type { GenerateQueue } from './generate-queue';

/** Bull Board adapters for the api's dashboard (the api mounts them behind its own auth). */
export function bullBoardAdapters(queue: GenerateQueue): BullMQAdapter[] {
  return [new BullMQAdapter(queue.queue, { readOnlyMode: false, description: 'one job per prompt' })];
}
