import { renderTemplate, type JobItemRef, type JobParams, type ReadJobData } from '@app/contracts';
import type { BatchLedger, StoredItem } from '@app/store';

/** What the worker runs for one job: its item, its prompt and its parameters, whichever job version it came as. */
export interface JobInput extends JobItemRef {
  prompt: string;
  promptIds?: number[];
  params: JobParams;
}

/** Parameter sets (and templates) kept per worker: a few hundred batches running at once on one worker is already a lot. */
export const DEFAULT_CACHED_PARAMS = 256;

/**
 * A bounded cache of parts a batch stores once (its parameter sets, its template), least recently used out first.
 * They are stored under a digest of their content and never change, so an entry is never stale; concurrent jobs of one
 * batch share one read.
 */
export class BatchPartsCache<T> {
  private readonly entries = new Map<string, Promise<T | null>>();
  /** Reads from Redis (misses), for tests and the worker's log. */
  reads = 0;

  constructor(
    private readonly load: (batchId: string, id: string) => Promise<T | null>,
    private readonly capacity = DEFAULT_CACHED_PARAMS,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  get(batchId: string, id: string): Promise<T | null> {
    const key = `${batchId}\n${id}`;
    const cached = this.entries.get(key);
    if (cached) {
      this.entries.delete(key);
      this.entries.set(key, cached);
      return cached;
    }
    this.reads += 1;
    const loading = this.load(batchId, id);
    this.entries.set(key, loading);
    // A failed read or a part that is not there (yet, or any more) is not remembered.
    loading.then((value) => value === null && this.forget(key, loading), () => this.forget(key, loading));
    while (this.entries.size > this.capacity) this.entries.delete(this.entries.keys().next().value!);
    return loading;
  }

  private forget(key: string, entry: Promise<T | null>): void {
    if (this.entries.get(key) === entry) this.entries.delete(key);
  }
}

/**
 * Resolves a job to what it runs. Version 1 jobs carry everything; version 2 jobs name their item and parameter set:
 * the prompt is read from the item record (its one home: it outlives the job, and retry-failed and the recovery of an
 * interrupted creation enqueue from it; a template batch's item holds its row, rendered here with the batch's
 * template), the parameters and templates through the caches (an online request's parameters, used once, are read
 * directly, not cached). Null when the item is not stored (its batch is gone).
 */
export class JobInputs {
  readonly cache: BatchPartsCache<JobParams>;
  readonly templates: BatchPartsCache<string>;

  constructor(private readonly batches: Pick<BatchLedger, 'storedItems' | 'batchParams' | 'batchTemplate'>, capacity = DEFAULT_CACHED_PARAMS) {
    this.cache = new BatchPartsCache((batchId, paramsId) => batches.batchParams(batchId, paramsId), capacity);
    this.templates = new BatchPartsCache((batchId, templateId) => batches.batchTemplate(batchId, templateId), capacity);
  }

  async resolve(data: ReadJobData): Promise<JobInput | null> {
    if (data.v === 1) return data;
    const ref = { kind: data.kind, batchId: data.batchId, index: data.index, customId: data.customId, owner: data.owner };
    const [[item], shared] = await Promise.all([
      this.batches.storedItems(data.batchId, [data.index]),
      data.kind === 'online' ? this.batches.batchParams(data.batchId, data.paramsId) : this.cache.get(data.batchId, data.paramsId),
    ]);
    if (!item) return null;
    // An item stored before parameter sets existed (re-enqueued by retry-failed) holds its parameters itself.
    const params = item.params ?? shared;
    if (!params) throw new Error(`${data.batchId} #${data.index}: parameter set ${data.paramsId} is not stored with its batch`);
    return { ...ref, prompt: await this.promptOf(data.batchId, item), ...(item.promptIds ? { promptIds: item.promptIds } : {}), params };
  }

  private async promptOf(batchId: string, item: StoredItem): Promise<string> {
    if (item.templateId === undefined) return item.prompt;
    const template = await this.templates.get(batchId, item.templateId);
    if (template === null) throw new Error(`${batchId} #${item.index}: template ${item.templateId} is not stored with its batch`);
    return renderTemplate(template, item.row);
  }
}
