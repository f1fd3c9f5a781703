// The results store port: batch state, per-item results, files, progress events, worker heartbeats.
// The api and the worker meet only through an implementation of this port (Redis by default).
import type { BatchCounts, BatchEvent, ItemResult, JobGenerationParams, RecordOutcome } from '@app/contracts';

export type BatchStatus =
  | 'validating'
  | 'failed'
  | 'in_progress'
  | 'finalizing'
  | 'completed'
  | 'expired'
  | 'cancelling'
  | 'cancelled';

/** Statuses after which a batch never changes again (except `retry-failed` reopening a completed batch). */
export const FINAL_BATCH_STATUSES: readonly BatchStatus[] = ['failed', 'completed', 'expired', 'cancelled'];

export function isFinalStatus(status: BatchStatus): boolean {
  return FINAL_BATCH_STATUSES.includes(status);
}

/** When a final batch reached its final status (epoch ms); null while it runs. */
export function finishedAtOf(batch: Pick<BatchRecord, 'completedAt' | 'failedAt' | 'expiredAt' | 'cancelledAt'>): number | null {
  return batch.completedAt ?? batch.cancelledAt ?? batch.expiredAt ?? batch.failedAt ?? null;
}

/** openai: created from an uploaded JSONL file; native: POST /batches; online: one /v1/completions request. */
export type BatchKind = 'openai' | 'native' | 'online';

/** The endpoint every line of a batch targets; `native` batches use the completions shape for their output. */
export type BatchEndpoint = '/v1/completions' | '/v1/chat/completions';

export interface BatchError {
  code: string;
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
  /** Seconds its keys (and output files) are kept once final, when set for this batch; null = the store's default. */
  retentionSeconds: number | null;
}

/** What a worker needs to run one item again (kept with the batch so `retry-failed` can re-enqueue it). */
export interface BatchItemInput {
  index: number;
  customId: string;
  prompt: string;
  /** A prompt sent as token ids (prompt holds their decoded text). */
  promptIds?: number[];
  params: JobGenerationParams;
}

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
  createdAt?: number;
  /** Seconds its keys are kept once it is final; default: the store's retention. */
  retentionSeconds?: number;
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

export interface IdempotencyClaim {
  claimed: boolean;
  /** The batch id the key belongs to (ours when claimed, the earlier one otherwise). */
  batchId: string;
  /** Fingerprint of the request body that first used the key. */
  fingerprint: string;
}

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

export interface ResultsStore {
  // --- batches
  /** Creates the batch record and its item inputs in one atomic step (status `validating`). */
  createBatch(batch: NewBatch): Promise<BatchRecord>;
  /** validating -> in_progress once its jobs are enqueued. */
  markBatchInProgress(batchId: string): Promise<BatchRecord | null>;
  /** Any non-final status -> failed, with the errors that explain why (enqueueing failed, ...). */
  markBatchFailed(batchId: string, errors: BatchError[]): Promise<BatchRecord | null>;
  getBatch(batchId: string): Promise<BatchRecord | null>;
  /** Newest first, filtered (a scan of the owner's batches); online requests are not listed. */
  listBatches(query: ListBatchesQuery): Promise<BatchPage>;
  /** Active (not final) batches of an owner, for the batches-in-flight limit (online requests not counted). */
  countActiveBatches(owner: string): Promise<number>;
  getItemInputs(batchId: string, indices: number[]): Promise<BatchItemInput[]>;

  // --- results
  /**
   * Records one item's result, once: a later result for the same index is ignored ('duplicate'). Counts, events and
   * the batch's move to `completed` (or `cancelled` after a cancel) happen in the same atomic step.
   */
  recordResult(result: ItemResult): Promise<RecordOutcome>;
  getResult(batchId: string, index: number): Promise<ItemResult | null>;
  getResultByCustomId(batchId: string, customId: string): Promise<ItemResult | null>;
  indexOfCustomId(batchId: string, customId: string): Promise<number | null>;
  /** Items whose custom_id starts with `prefix`, by index; at most `limit` (hasMore when more exist). */
  findCustomIdsByPrefix(batchId: string, prefix: string, limit: number): Promise<{ items: { index: number; customId: string }[]; hasMore: boolean }>;
  /** Results of indices offset .. offset+limit-1 in order; null where an item has no result yet. */
  listResults(batchId: string, offset: number, limit: number): Promise<(ItemResult | null)[]>;
  /** Indices without a result, in order. */
  listPendingIndices(batchId: string): Promise<number[]>;

  // --- lifecycle
  /** in_progress/validating/finalizing -> cancelling. Returns the batch after the call, null if unknown. */
  requestCancel(batchId: string): Promise<BatchRecord | null>;
  /** Any non-final status -> expired; idempotent (returns false when another caller already expired it). */
  expireBatch(batchId: string): Promise<boolean>;
  /** Ids of active batches whose expires_at has passed. */
  listBatchesDueForExpiry(now: number, limit: number): Promise<string[]>;
  /** Batches still `validating` that were created before the given time (their creation was interrupted). */
  listStaleValidating(createdBefore: number, limit: number): Promise<string[]>;
  /** Removes the results of failed items (not cancelled/expired ones) and reopens the batch; returns their indices. */
  reopenFailedItems(batchId: string): Promise<number[]>;

  // --- idempotency
  claimIdempotencyKey(owner: string, key: string, batchId: string, fingerprint: string): Promise<IdempotencyClaim>;
  releaseIdempotencyKey(owner: string, key: string, batchId: string): Promise<void>;

  // --- files
  createFile(file: NewFile): Promise<StoredFile>;
  getFile(fileId: string): Promise<StoredFile | null>;
  getFileContent(fileId: string): Promise<string | null>;
  deleteFile(fileId: string): Promise<boolean>;
  listFiles(owner: string | undefined, limit: number): Promise<StoredFile[]>;

  // --- events
  /**
   * The item events of a batch from `position` on (0-based, in the order its items finished; at most `limit`): an
   * event stream that reconnects, or a client that resumes with Last-Event-ID, reads on from where it was.
   */
  itemEventsSince(batchId: string, position: number, limit: number): Promise<BatchEvent[]>;
  /** Last events of a batch (oldest first), so a late subscriber can catch up. */
  recentEvents(batchId: string): Promise<BatchEvent[]>;
  subscribe(batchId: string, listener: (event: BatchEvent) => void): Promise<Unsubscribe>;
  publishStream(requestId: string, message: StreamMessage): Promise<void>;
  subscribeStream(requestId: string, listener: (message: StreamMessage) => void): Promise<Unsubscribe>;

  // --- workers and stats
  recordWorkerHeartbeat(workerId: string, info: WorkerHeartbeatInfo): Promise<void>;
  /** Workers seen within maxAgeMs. */
  listWorkers(maxAgeMs: number): Promise<WorkerHeartbeat[]>;
  stats(): Promise<StoreStats>;

  ping(): Promise<void>;
  close(): Promise<void>;
}
