// What travels through the BullMQ queue: one job per prompt (one line of a batch, or one online request). A stored job
// outlives a deploy, so its shape is versioned and owned here, not borrowed from the engine: the worker maps it to the
// engine's parameters (apps/worker), and a renamed engine field changes that mapping, not the jobs in Redis.

/** Name of the BullMQ queue that carries generation jobs. */
export const GENERATE_QUEUE = 'generate';

/** BullMQ priorities (lower runs first): online requests overtake batch items. */
export const PRIORITY = { online: 1, batch: 10 } as const;

/** Generation parameters of a job, version 1 (validated by the api before they are enqueued). */
export interface JobParamsV1 {
  maxNewTokens: number;
  doSample: boolean;
  temperature: number;
  topK: number;
  topP: number;
  repetitionPenalty: number;
  stop: string[];
  numReturnSequences: number;
  returnFullText: boolean;
  ignoreEos: boolean;
  truncate: boolean;
  seed?: number;
  /** Report each generated token's log-probability with this many alternatives (0-20); absent: none. */
  logprobs?: number;
}

export type JobKind = 'batch' | 'online';

export const JOB_WIRE_VERSION = 1 as const;

export interface GenerateJobDataV1 {
  v: 1;
  kind: JobKind;
  batchId: string; // for online requests: the request id
  index: number; // line index in the batch (0-based)
  customId: string; // the OpenAI custom_id, or `item-<index>` for native batches
  prompt: string; // fully rendered (templates and chat messages are rendered by the api)
  promptIds?: number[]; // a prompt sent as token ids: run exactly these (prompt is their decoded text, for echo)
  params: JobParamsV1;
  owner: string; // tenant (API key id) that submitted it
  enqueuedAt: number; // epoch ms
}

/** The job shape this version writes. */
export type GenerateJobData = GenerateJobDataV1;
export type JobParams = JobParamsV1;

/** Any job shape a worker may still find in Redis: the current one, and jobs written before versions existed. */
export type StoredJobData = GenerateJobDataV1 | Omit<GenerateJobDataV1, 'v'>;

/** The current shape of a stored job, whichever version wrote it; throws naming a version this worker cannot read. */
export function readJobData(stored: StoredJobData): GenerateJobData {
  const version = 'v' in stored ? stored.v : 1;
  if (version === 1) return { ...stored, v: 1 };
  throw new Error(`job ${stored.batchId}-${stored.index} has wire version ${String(version)}; this worker reads version ${JOB_WIRE_VERSION}`);
}

/** The job of one item of a batch (or of an online request), in the current wire version. */
export function jobOf(batchId: string, owner: string, item: { index: number; customId: string; prompt: string; promptIds?: number[]; params: JobParams }, kind: JobKind = 'batch', enqueuedAt = Date.now()): GenerateJobData {
  return {
    v: JOB_WIRE_VERSION, kind, batchId, index: item.index, customId: item.customId, prompt: item.prompt, params: item.params, owner, enqueuedAt,
    ...(item.promptIds ? { promptIds: item.promptIds } : {}),
  };
}

/** Stable job id: BullMQ refuses a second job with the same id, so re-enqueueing an item never duplicates it. */
export function generateJobId(batchId: string, index: number): string {
  return `${batchId}-${index}`;
}
