// The records the store keeps and serves. Statuses, codes and the rules between them belong to the lifecycle
// (libs/contracts); these are the shapes.
import type { BatchCounts, BatchErrorCode, BatchStatus, JobParams, TemplateRow } from '@app/contracts';

/** openai: created from an uploaded JSONL file; native: POST /batches; online: one /v1/completions request. */
export type BatchKind = 'openai' | 'native' | 'online';

/** The endpoint every line of a batch targets; `native` batches use the completions shape for their output. */
export type BatchEndpoint = '/v1/completions' | '/v1/chat/completions';

export interface BatchError {
  code: BatchErrorCode | (string & {});
  message: string;
  line?: number | null;
  param?: string | null;
}

/** All timestamps are epoch milliseconds (the api turns them into OpenAI's seconds). */
export interface BatchRecord {
  id: string;
  kind: BatchKind;
  owner: string;
  endpoint: BatchEndpoint;
  model: string;
  status: BatchStatus;
  completionWindow: string;
  metadata: Record<string, string> | null;
  inputFileId: string | null;
  outputFileId: string;
  errorFileId: string;
  createdAt: number;
  inProgressAt: number | null;
  finalizingAt: number | null;
  completedAt: number | null;
  failedAt: number | null;
  expiredAt: number | null;
  cancellingAt: number | null;
  cancelledAt: number | null;
  expiresAt: number;
  requestCounts: BatchCounts;
  /** Prompt tokens of the items that succeeded. */
  promptTokens: number;
  completionTokens: number;
  errors: BatchError[] | null;
  /** Seconds its keys are kept once it is final (0 = forever): set at creation, whoever finishes the batch. */
  retentionSeconds: number;
}

/** What a worker needs to run one item again (kept with the batch so recovery and `retry-failed` can enqueue it). */
export interface BatchItemInput {
  index: number;
  customId: string;
  prompt: string;
  /** A prompt sent as token ids (prompt holds their decoded text). */
  promptIds?: number[];
  params: JobParams;
  /** The row a template batch's prompt was rendered from (NewBatch.template): stored instead of the prompt. */
  row?: TemplateRow;
}

/**
 * An item as the store keeps it: its own fields, and the id of its parameter set, stored once per batch however many
 * items share it (paramsIdOf in libs/contracts). Items stored before parameter sets existed hold `params` inline. An
 * item of a template batch keeps its row and the id of the batch's template (contentIdOf) instead of its prompt, where
 * that record is the smaller one.
 */
export type StoredItem = Omit<BatchItemInput, 'params' | 'prompt' | 'row'>
  & ({ paramsId: string; params?: undefined } | { params: JobParams; paramsId?: undefined })
  & ({ prompt: string; row?: undefined; templateId?: undefined } | { row: TemplateRow; templateId: string; prompt?: undefined });

export interface NewBatch {
  id: string;
  kind: BatchKind;
  owner: string;
  endpoint: BatchEndpoint;
  model: string;
  completionWindowMs: number;
  completionWindow: string;
  metadata: Record<string, string> | null;
  inputFileId: string | null;
  items: BatchItemInput[];
  /** A template batch's template: stored once, and the items with a row store the row instead of their prompt. */
  template?: string;
  /** Seconds its keys are kept once it is final; 0 keeps them forever. */
  retentionSeconds: number;
  createdAt?: number;
}

export interface BatchPage {
  data: BatchRecord[];
  hasMore: boolean;
}

export interface ListBatchesQuery {
  /** Only this owner's batches; undefined = all (admins). */
  owner?: string;
  /** Cursor: the id of the last batch of the previous page. */
  after?: string;
  limit: number;
  /** Only batches of this kind. */
  kind?: BatchKind;
  /** Only batches in one of these statuses. */
  statuses?: BatchStatus[];
  /** Only batches whose metadata holds every one of these key/value pairs. */
  metadata?: Record<string, string>;
}

/** Whether a batch passes a listing's filters (kind, statuses, metadata). */
export function matchesBatchQuery(batch: BatchRecord, query: ListBatchesQuery): boolean {
  if (query.kind !== undefined && batch.kind !== query.kind) return false;
  if (query.statuses !== undefined && !query.statuses.includes(batch.status)) return false;
  for (const [key, value] of Object.entries(query.metadata ?? {})) if (batch.metadata?.[key] !== value) return false;
  return true;
}

/** When a final batch reached its final status (epoch ms); null while it runs. */
export function finishedAtOf(batch: Pick<BatchRecord, 'completedAt' | 'failedAt' | 'expiredAt' | 'cancelledAt'>): number | null {
  return batch.completedAt ?? batch.cancelledAt ?? batch.expiredAt ?? batch.failedAt ?? null;
}

export interface StoredFile {
  id: string;
  owner: string;
  bytes: number;
  createdAt: number; // epoch ms
  filename: string;
  purpose: string;
}

export interface NewFile {
  owner: string;
  filename: string;
  purpose: string;
  content: string;
}

export interface WorkerHeartbeat {
  workerId: string;
  /** epoch ms of the last heartbeat (set by the store) */
  seenAt: number;
  host?: string;
  pid?: number;
  executionProvider?: string;
  deviceId?: number;
  slots?: number;
  activeSequences?: number;
  waitingRequests?: number;
  tokensPerSecond?: number;
  /** Rows per decode step since the last heartbeat: how full the batch runs (at most `slots`). */
  rowsPerDecodeStep?: number;
  decodeMsPerStep?: number;
  /** Share of the time since the last heartbeat spent in prefill runs (0..1). */
  prefillShare?: number;
  itemsProcessed?: number;
}

export type WorkerHeartbeatInfo = Omit<WorkerHeartbeat, 'workerId' | 'seenAt'>;

/**
 * Online text deltas a worker publishes while it generates a streamed request. `attempt` names the run: when a worker
 * dies mid-stream, the retry on another worker streams its text again from the start under a new attempt.
 */
export type StreamMessage =
  | { type: 'delta'; attempt: string; sequence: number; text: string }
  | { type: 'done' };

export interface StoreStats {
  itemsSucceeded: number;
  itemsFailed: number;
  itemsCancelled: number;
  itemsExpired: number;
  completionTokens: number;
}

export type Unsubscribe = () => Promise<void>;
