import type { BatchEvent } from '@app/contracts';
import type { RedisClient } from '@app/redis';
import { StoreKeys } from './redis-keys';
import { type StoreCommands, withStoreCommands } from './scripts';
import type { StreamMessage, Unsubscribe } from './types';

/** Channel multiplexer over one subscriber connection (a subscribed connection cannot run commands). */
class Subscriptions {
  private connection: RedisClient | null = null;
  private readonly listeners = new Map<string, Set<(message: string) => void>>();

  constructor(private readonly create: () => RedisClient) {}

  private connect(): RedisClient {
    if (!this.connection) {
      this.connection = this.create();
      this.connection.on('message', (channel: string, message: string) => {
        for (const listener of this.listeners.get(channel) ?? []) listener(message);
      });
    }
    return this.connection;
  }

  async add(channel: string, listener: (message: string) => void): Promise<Unsubscribe> {
    const connection = this.connect();
    let set = this.listeners.get(channel);
    if (!set) {
      set = new Set();
      this.listeners.set(channel, set);
      await connection.subscribe(channel);
    }
    set.add(listener);
    return async () => {
      const current = this.listeners.get(channel);
      if (!current) return;
      current.delete(listener);
      if (current.size === 0) {
        this.listeners.delete(channel);
        await connection.unsubscribe(channel).catch(() => undefined);
      }
    };
  }

  async close(): Promise<void> {
    this.listeners.clear();
    if (this.connection) await this.connection.quit().catch(() => undefined);
    this.connection = null;
  }
}

export interface BatchEventsOptions {
  prefix: string;
  /** Creates the extra connection used for subscriptions, on first subscribe. */
  createSubscriber: () => RedisClient;
}

/**
 * A batch's events (written by the lifecycle scripts as they change it) and the text deltas of online requests:
 * history for late subscribers, live subscriptions, and the worker's stream publishing.
 */
export class BatchEvents {
  private readonly keys: StoreKeys;
  private readonly subscriptions: Subscriptions;
  private readonly commands: StoreCommands;

  constructor(private readonly redis: RedisClient, options: BatchEventsOptions) {
    this.keys = new StoreKeys(options.prefix);
    this.commands = withStoreCommands(redis);
    this.subscriptions = new Subscriptions(options.createSubscriber);
  }

  /**
   * The item events of a batch from `position` on (0-based, in the order its items finished; at most `limit`): an
   * event stream that reconnects, or a client that resumes with Last-Event-ID, reads on from where it was.
   */
  async itemEventsSince(batchId: string, position: number, limit: number): Promise<BatchEvent[]> {
    const raw = await this.redis.lrange(this.keys.finished(batchId), position, position + limit - 1);
    return raw.map((r) => JSON.parse(r) as BatchEvent);
  }

  /** Last events of a batch (oldest first), so a late subscriber can catch up. */
  async recent(batchId: string): Promise<BatchEvent[]> {
    const raw = await this.redis.lrange(this.keys.history(batchId), 0, -1);
    return raw.map((r) => JSON.parse(r) as BatchEvent);
  }

  subscribe(batchId: string, listener: (event: BatchEvent) => void): Promise<Unsubscribe> {
    return this.subscriptions.add(this.keys.eventsChannel(batchId), (m) => listener(JSON.parse(m) as BatchEvent));
  }

  /** Messages of one request reach its subscriber in the order they were published, on Redis Cluster too. */
  async publishStream(requestId: string, message: StreamMessage): Promise<void> {
    await this.commands.falconqPublishInOrder(this.keys.streamChannel(requestId), JSON.stringify(message));
  }

  subscribeStream(requestId: string, listener: (message: StreamMessage) => void): Promise<Unsubscribe> {
    return this.subscriptions.add(this.keys.streamChannel(requestId), (m) => listener(JSON.parse(m) as StreamMessage));
  }

  async close(): Promise<void> {
    await this.subscriptions.close();
  }
}
