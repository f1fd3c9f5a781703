import type { RedisClient } from '@app/redis';
import { StoreKeys } from './redis-keys';
import type { WorkerHeartbeat, WorkerHeartbeatInfo } from './types';

/** The workers that told the store recently that they live, and what they run on. */
export class WorkerRegistry {
  private readonly keys: StoreKeys;

  constructor(private readonly redis: RedisClient, prefix: string) {
    this.keys = new StoreKeys(prefix);
  }

  async recordHeartbeat(workerId: string, info: WorkerHeartbeatInfo): Promise<void> {
    const heartbeat: WorkerHeartbeat = { ...info, workerId, seenAt: Date.now() };
    await this.redis.hset(this.keys.workers(), workerId, JSON.stringify(heartbeat));
  }

  /** Workers seen within maxAgeMs. */
  async list(maxAgeMs: number): Promise<WorkerHeartbeat[]> {
    const all = await this.redis.hgetall(this.keys.workers());
    const now = Date.now();
    const alive: WorkerHeartbeat[] = [];
    const gone: string[] = [];
    for (const [id, raw] of Object.entries(all)) {
      const heartbeat = JSON.parse(raw) as WorkerHeartbeat;
      if (now - heartbeat.seenAt <= maxAgeMs) alive.push(heartbeat);
      // Long-silent workers are forgotten so the hash does not grow with every restart.
      else if (now - heartbeat.seenAt > Math.max(maxAgeMs * 10, 3_600_000)) gone.push(id);
    }
    if (gone.length > 0) await this.redis.hdel(this.keys.workers(), ...gone);
    return alive.sort((a, b) => a.workerId.localeCompare(b.workerId));
  }
}
