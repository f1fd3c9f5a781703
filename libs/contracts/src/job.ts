import type { GenerationParams } from '@app/engine';

// What travels through the BullMQ queue: one job per prompt (one line of a batch, or one online request).

/** Name of the BullMQ queue that carries generation jobs. */
export const GENERATE_QUEUE = 'generate';

/** BullMQ priorities (lower runs first): online requests overtake batch items. */
export const PRIORITY = { online: 1, batch: 10 } as const;

/**
 * Generation parameters as they travel in a job: the engine's own type, already validated by the api with the
 * engine's rules (resolveGenerationParams in libs/engine), so a worker never sees an invalid one.
 */
export type JobGenerationParams = GenerationParams;

export type JobKind = 'batch' | 'online';

export interface GenerateJobData {
  kind: JobKind;
  batchId: string; // for online requests: the request id
  index: number; // line index in the batch (0-based)
  customId: string; // the OpenAI custom_id, or `item-<index>` for native batches
  prompt: string; // fully rendered (templates and chat messages are rendered by the api)
  promptIds?: number[]; // a prompt sent as token ids: run exactly these (prompt is their decoded text, for echo)
  params: JobGenerationParams;
  owner: string; // tenant (API key id) that submitted it
  enqueuedAt: number; // epoch ms
}

/** Stable job id: BullMQ refuses a second job with the same id, so re-enqueueing an item never duplicates it. */
export function generateJobId(batchId: string, index: number): string {
  return `${batchId}-${index}`;
}
