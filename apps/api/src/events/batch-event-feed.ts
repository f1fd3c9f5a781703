import type { BatchEvent } from '@app/contracts';
import { isFinalStatus } from '@app/contracts';
import type { BatchEvents, BatchLedger, BatchRecord } from '@app/store';
import { snapshotEvent } from './batch-snapshot';

/** How often the feed re-reads the batch without a wake-up (pub/sub messages are lost while Redis restarts). */
export const FEED_POLL_MS = 2_000;
/** Least time between two progress events of one stream. */
const PROGRESS_MS = 250;
/** Item events read per Redis round trip. */
const PAGE = 500;

/**
 * The events of one batch for one client, read from what Redis keeps rather than relayed from pub/sub: pub/sub only
 * wakes the feed up early, so a message lost to a Redis restart, or a reconnect that came after the batch finished,
 * loses nothing. Item events are numbered by their position in the batch's finishing order (the SSE `id`), so a client
 * that reconnects with Last-Event-ID gets exactly the items it has not seen; the feed ends with the final status.
 */
export class BatchEventFeed {
  private running = false;
  private again = false;
  private ended = false;
  private lastProgressAt = 0;
  private lastCounts = '';
  private throttled: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: { events: Pick<BatchEvents, 'itemEventsSince'>; batches: Pick<BatchLedger, 'get'> },
    private readonly batchId: string,
    /** Item events the client already has (its Last-Event-ID). */
    private position: number,
    private readonly send: (event: BatchEvent, id: number) => void,
    private readonly end: () => void,
  ) {}

  /** Reads what is new; calls coalesce (one read at a time, one more after it if woken meanwhile). */
  async wake(): Promise<void> {
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    try {
      do {
        this.again = false;
        await this.step();
      } while (this.again && !this.ended);
    } catch {
      // Redis is unreachable: the next poll tries again; the client keeps its stream (and its keep-alives).
    } finally {
      this.running = false;
    }
  }

  stop(): void {
    this.ended = true;
    clearTimeout(this.throttled);
  }

  private async step(): Promise<void> {
    await this.readItems();
    if (this.ended) return;
    const batch = await this.store.batches.get(this.batchId);
    if (!batch) return this.finish();
    if (isFinalStatus(batch.status)) {
      // Items that finished between the two reads above are in the list now: a final batch gets no more.
      await this.readItems();
      if (this.ended) return;
      this.progress(batch);
      this.send({ type: 'status', batchId: batch.id, status: batch.status, counts: batch.requestCounts, at: Date.now() }, this.position);
      return this.finish();
    }
    this.progress(batch);
  }

  private async readItems(): Promise<void> {
    for (;;) {
      if (this.ended) return;
      const events = await this.store.events.itemEventsSince(this.batchId, this.position, PAGE);
      for (const event of events) this.send(event, ++this.position);
      if (events.length < PAGE) return;
    }
  }

  private progress(batch: BatchRecord): void {
    const counts = JSON.stringify(batch.requestCounts);
    const now = Date.now();
    if (counts === this.lastCounts) return;
    const wait = this.lastProgressAt + PROGRESS_MS - now;
    if (wait > 0) {
      // Throttled: come back when the next progress event is due, with whatever the counts are then.
      this.throttled ??= setTimeout(() => {
        this.throttled = undefined;
        void this.wake();
      }, wait);
      return;
    }
    this.lastCounts = counts;
    this.lastProgressAt = now;
    this.send(snapshotEvent(batch, now), this.position);
  }

  private finish(): void {
    if (this.ended) return;
    this.stop();
    this.end();
  }
}
