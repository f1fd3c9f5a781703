// What travels through the BullMQ queue: one job per prompt (one line of a batch, or one online request). A stored job
// outlives a deploy, so its shape is versioned and owned here, not borrowed from the engine: the worker maps it to the
// engine's parameters (apps/worker), and a renamed engine field changes that mapping, not the jobs in Redis.
import { createHash } from 'node:crypto';

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
  /** With logprobs: also report each prompt token's log-probability (completions' echo); maxNewTokens may be 0. */
  promptLogprobs?: boolean;
}

export type JobKind = 'batch' | 'online';

export const JOB_WIRE_VERSION = 2 as const;

/**
 * Version 1: the job carried its rendered prompt and its whole parameters, so a batch of 500 prompts held its shared
 * parameters 1,000 times (in every item record and every job). Still read: a stored job outlives a deploy.
 */
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

/**
 * Version 2: the job names its item and the parameter set it runs with; the prompt and the parameters live once in
 * the store (the item record holds the prompt, the batch holds each distinct parameter set once, under
 * `paramsIdOf(params)`), and the worker reads them there, the parameters through a cache.
 */
export interface GenerateJobDataV2 {
  v: 2;
  kind: JobKind;
  batchId: string;
  index: number;
  customId: string;
  /** Which of the batch's stored parameter sets this item runs with (paramsIdOf). */
  paramsId: string;
  owner: string;
  // No enqueuedAt: BullMQ keeps when a job was added (its `timestamp`).
}

/** The job shape this version writes. */
export type GenerateJobData = GenerateJobDataV2;
export type JobParams = JobParamsV1;

/** Any job shape a worker may still find in Redis: both versions, and jobs written before versions existed. */
export type StoredJobData = GenerateJobDataV2 | GenerateJobDataV1 | Omit<GenerateJobDataV1, 'v'>;

/** A stored job with its version made explicit. */
export type ReadJobData = GenerateJobDataV1 | GenerateJobDataV2;

/** What identifies a job's item, whichever version wrote it (all a report of its outcome needs). */
export type JobItemRef = Pick<GenerateJobDataV2, 'kind' | 'batchId' | 'index' | 'customId' | 'owner'>;

/** A stored job with its version made explicit; throws naming a version this worker cannot read. */
export function readJobData(stored: StoredJobData): ReadJobData {
  const version = 'v' in stored ? stored.v : 1;
  if (version === 2) return stored as GenerateJobDataV2;
  if (version === 1) return { ...(stored as GenerateJobDataV1), v: 1 };
  throw new Error(`job ${stored.batchId}-${stored.index} has wire version ${String(version)}; this worker reads versions 1 to ${JOB_WIRE_VERSION}`);
}

/**
 * The id of a parameter set: a digest of its fields in a fixed order, so equal parameters (the lines of a JSONL file
 * that share max_tokens, temperature and stop) share one stored copy within their batch. Parameters stored under an
 * id never change: a cached copy is never stale.
 */
export function paramsIdOf(params: JobParams): string {
  return contentIdOf(JSON.stringify(params, Object.keys(params).sort()));
}

/** The id of a part of a batch stored once (a parameter set, a template): a digest of its text. */
export function contentIdOf(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}

/** The job of one item of a batch (or of an online request), in the current wire version. */
export function jobOf(batchId: string, owner: string, item: { index: number; customId: string; params: JobParams }, kind: JobKind = 'batch'): GenerateJobData {
  return { v: JOB_WIRE_VERSION, kind, batchId, index: item.index, customId: item.customId, paramsId: paramsIdOf(item.params), owner };
}

/** Stable job id: BullMQ refuses a second job with the same id, so re-enqueueing an item never duplicates it. */
export function generateJobId(batchId: string, index: number): string {
  return `${batchId}-${index}`;
}
