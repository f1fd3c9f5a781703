import { createHash } from 'node:crypto';
import type { RedisClient } from '@app/redis';
import { StoreKeys } from './redis-keys';
import { withStoreCommands } from './scripts';

/** Who holds an Idempotency-Key: the batch created with it and the fingerprint of the request body. */
export interface IdempotencyHolder {
  batchId: string;
  fingerprint: string;
}

/** A key to claim while creating a batch (BatchLedger.create claims it in the same atomic step). */
export interface IdempotencyClaim {
  owner: string;
  key: string;
  fingerprint: string;
  ttlSeconds: number;
}

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

/** Idempotency-Keys per owner. A key is claimed only together with the batch it creates, so it never dangles. */
export class IdempotencyKeys {
  private readonly keys: StoreKeys;

  constructor(private readonly redis: RedisClient, prefix: string) {
    this.keys = new StoreKeys(prefix);
  }

  redisKey(owner: string, key: string): string {
    return this.keys.idempotency(owner, sha256(key));
  }

  static value(holder: IdempotencyHolder): string {
    return JSON.stringify(holder);
  }

  async holder(owner: string, key: string): Promise<IdempotencyHolder | null> {
    const raw = await this.redis.get(this.redisKey(owner, key));
    return raw ? (JSON.parse(raw) as IdempotencyHolder) : null;
  }

  /** Forgets the key if it still belongs to this holder (its batch is gone: the key may create a new one). */
  async release(owner: string, key: string, holder: IdempotencyHolder): Promise<void> {
    await withStoreCommands(this.redis).falconqDeleteIfEqual(this.redisKey(owner, key), IdempotencyKeys.value(holder));
  }
}
