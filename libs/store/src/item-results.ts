import type { ItemReport, ItemResult, RecordOutcome } from '@app/contracts';
import type { RedisClient } from '@app/redis';
import { StoreKeys } from './redis-keys';
import { withStoreCommands } from './scripts';
import type { StoreStats } from './types';

export interface ItemResultsOptions {
  prefix: string;
  /** Minimum ms between two progress events of one batch. */
  progressIntervalMs?: number;
}

/** A stop reported for a batch that still runs: the reporter must hand the item back instead. */
export class ItemStillRunsError extends Error {
  override readonly name = 'ItemStillRunsError';
}

/**
 * One result per item. Recording it also counts it, publishes it, and settles the batch when it was the last item
 * (SETTLEMENT in libs/contracts), in one atomic step; whoever records the last result, the batch ends the same way.
 */
export class ItemResults {
  readonly keys: StoreKeys;
  private readonly progressIntervalMs: number;

  constructor(private readonly redis: RedisClient, options: ItemResultsOptions) {
    this.keys = new StoreKeys(options.prefix);
    this.progressIntervalMs = options.progressIntervalMs ?? 250;
  }

  /**
   * Records one item's outcome, once: a later report for the same index is ignored ('duplicate'), and so is one for a
   * batch that no longer exists (past its retention). A `stopped` report becomes cancelled, expired or failed after
   * the batch's state.
   */
  async record(report: ItemReport): Promise<RecordOutcome> {
    const k = this.keys;
    const id = report.batchId;
    const outcome = (await withStoreCommands(this.redis).falconqRecordResult(
      k.batch(id), k.results(id), k.history(id), k.items(id), k.customIds(id), k.deadlines(), k.stats(), k.creating(),
      k.finished(id), k.webhooksEnabled(), k.webhookEvents(), k.webhookDue(),
      report.index, resultJson(report), report.outcome, Date.now(), report.outcome === 'succeeded' ? report.output.completionTokens : 0,
      report.customId, k.eventsChannel(id), k.activePrefix(), this.progressIntervalMs, report.attempts, report.workerId ?? '',
      report.finishedAt, report.outcome === 'succeeded' ? report.output.promptTokens : 0,
    )) as string;
    if (outcome === 'running') throw new ItemStillRunsError(`${id} #${report.index}: reported stopped, but its batch still runs`);
    return outcome === 'recorded' ? 'recorded' : 'duplicate';
  }

  async get(batchId: string, index: number): Promise<ItemResult | null> {
    const raw = await this.redis.hget(this.keys.results(batchId), String(index));
    return raw ? (JSON.parse(raw) as ItemResult) : null;
  }

  async indexOfCustomId(batchId: string, customId: string): Promise<number | null> {
    const raw = await this.redis.hget(this.keys.customIds(batchId), customId);
    return raw === null ? null : Number(raw);
  }

  async getByCustomId(batchId: string, customId: string): Promise<ItemResult | null> {
    const index = await this.indexOfCustomId(batchId, customId);
    return index === null ? null : this.get(batchId, index);
  }

  /** Items whose custom_id starts with `prefix`, by index; at most `limit` (hasMore when more exist). */
  async findCustomIdsByPrefix(batchId: string, prefix: string, limit: number): Promise<{ items: { index: number; customId: string }[]; hasMore: boolean }> {
    // HSCAN's MATCH is a glob: the prefix's own glob characters are escaped.
    const pattern = `${prefix.replace(/[*?[\]\\]/g, (c) => `\\${c}`)}*`;
    const found: { index: number; customId: string }[] = [];
    let cursor = '0';
    do {
      const [next, flat] = await this.redis.hscan(this.keys.customIds(batchId), cursor, 'MATCH', pattern, 'COUNT', 1000);
      for (let i = 0; i < flat.length; i += 2) if (flat[i].startsWith(prefix)) found.push({ customId: flat[i], index: Number(flat[i + 1]) });
      cursor = next;
    } while (cursor !== '0');
    found.sort((a, b) => a.index - b.index);
    return { items: found.slice(0, limit), hasMore: found.length > limit };
  }

  /** Results of indices offset .. offset+limit-1 in order; null where an item has no result yet. */
  async list(batchId: string, offset: number, limit: number): Promise<(ItemResult | null)[]> {
    const total = Number((await this.redis.hget(this.keys.batch(batchId), 'total')) ?? 0);
    const end = Math.min(total, offset + limit);
    if (end <= offset) return [];
    const fields = Array.from({ length: end - offset }, (_, i) => String(offset + i));
    const raw = await this.redis.hmget(this.keys.results(batchId), ...fields);
    return raw.map((r) => (r ? (JSON.parse(r) as ItemResult) : null));
  }

  /** Indices without a result, in order. */
  async pendingIndices(batchId: string): Promise<number[]> {
    const total = Number((await this.redis.hget(this.keys.batch(batchId), 'total')) ?? 0);
    const done = new Set((await this.redis.hkeys(this.keys.results(batchId))).map(Number));
    const pending: number[] = [];
    for (let i = 0; i < total; i++) if (!done.has(i)) pending.push(i);
    return pending;
  }

  /** Items and tokens since the store began (for metrics). */
  async stats(): Promise<StoreStats> {
    const [s, f, c, e, t] = await this.redis.hmget(this.keys.stats(), 'items_succeeded', 'items_failed', 'items_cancelled', 'items_expired', 'completion_tokens');
    return { itemsSucceeded: Number(s ?? 0), itemsFailed: Number(f ?? 0), itemsCancelled: Number(c ?? 0), itemsExpired: Number(e ?? 0), completionTokens: Number(t ?? 0) };
  }
}

/** The stored result of a succeeded or failed report; a stop's result is built by the script from the batch's state. */
function resultJson(report: ItemReport): string {
  if (report.outcome === 'stopped') return '';
  const { outcome, ...common } = report;
  const result: ItemResult = outcome === 'succeeded'
    ? { ...common, status: 'succeeded' }
    : { ...common, status: 'failed' };
  return JSON.stringify(result);
}
