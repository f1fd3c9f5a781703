import { randomBytes } from 'node:crypto';
import type { RedisClient } from '@app/redis';
import { StoreKeys } from './redis-keys';
import type { NewFile, StoredFile } from './types';

export interface FilesOptions {
  prefix: string;
  /** Seconds an uploaded file is kept; 0 keeps it until deleted. */
  retentionSeconds: number;
}

function toStoredFile(h: (string | null)[]): StoredFile | null {
  const [id, owner, bytes, createdAt, filename, purpose] = h;
  if (!id) return null;
  return { id, owner: owner!, bytes: Number(bytes), createdAt: Number(createdAt), filename: filename!, purpose: purpose! };
}

/** Uploaded files (their metadata and content), per owner. */
export class Files {
  private readonly keys: StoreKeys;

  constructor(private readonly redis: RedisClient, private readonly options: FilesOptions) {
    this.keys = new StoreKeys(options.prefix);
  }

  async create(file: NewFile): Promise<StoredFile> {
    const id = `file-${randomBytes(12).toString('hex')}`;
    const stored: StoredFile = {
      id, owner: file.owner, bytes: Buffer.byteLength(file.content, 'utf8'), createdAt: Date.now(), filename: file.filename, purpose: file.purpose,
    };
    const tx = this.redis.multi();
    tx.hset(this.keys.file(id), {
      id, owner: stored.owner, bytes: stored.bytes, created_at: stored.createdAt, filename: stored.filename,
      purpose: stored.purpose, content: file.content,
    });
    if (this.options.retentionSeconds > 0) tx.expire(this.keys.file(id), this.options.retentionSeconds);
    tx.zadd(this.keys.allFiles(), stored.createdAt, id);
    tx.zadd(this.keys.ownerFiles(stored.owner), stored.createdAt, id);
    await tx.exec();
    return stored;
  }

  async get(fileId: string): Promise<StoredFile | null> {
    return toStoredFile(await this.redis.hmget(this.keys.file(fileId), 'id', 'owner', 'bytes', 'created_at', 'filename', 'purpose'));
  }

  async content(fileId: string): Promise<string | null> {
    return this.redis.hget(this.keys.file(fileId), 'content');
  }

  async delete(fileId: string): Promise<boolean> {
    const owner = await this.redis.hget(this.keys.file(fileId), 'owner');
    if (owner === null) return false;
    const tx = this.redis.multi();
    tx.del(this.keys.file(fileId));
    tx.zrem(this.keys.allFiles(), fileId);
    tx.zrem(this.keys.ownerFiles(owner), fileId);
    await tx.exec();
    return true;
  }

  /** Newest first; undefined owner = all (admins). */
  async list(owner: string | undefined, limit: number): Promise<StoredFile[]> {
    const index = owner === undefined ? this.keys.allFiles() : this.keys.ownerFiles(owner);
    const ids = await this.redis.zrevrange(index, 0, limit - 1);
    const files = await Promise.all(ids.map((id) => this.get(id)));
    return files.filter((f): f is StoredFile => f !== null);
  }
}
