import { randomBytes } from 'node:crypto';
import type { RedisClient } from '@app/redis';
import { StoreKeys } from './redis-keys';
import { withStoreCommands } from './scripts';
import type { NewFile, StoredFile } from './types';

// A file is a metadata hash plus its content as a list of chunks beside it. An upload is written chunk by chunk to a
// staging list with a TTL while it arrives, and published (renamed into place, with its metadata and index entries) in
// one atomic step once it is complete: a file is either all there or not listed at all. Every key of a file is under
// the store's prefix, whose hash tag puts them in one Redis Cluster slot.

export interface FilesOptions {
  prefix: string;
  /** Seconds an uploaded file is kept; 0 keeps it until deleted. */
  retentionSeconds: number;
}

/** How long the chunks of an upload that stopped arriving (the api died mid-upload) are kept; each chunk renews it. */
export const UPLOAD_STAGING_TTL_S = 3600;

/**
 * The size of a file's chunks. Just under 256 KiB: Redis keeps a list element this large with a small header, and an
 * allocation of exactly 256 KiB plus that header falls in the allocator's next size class (320 KiB), which took 25%
 * more memory than the file (measured with Redis 7.0 and jemalloc 5.3); 64 bytes less takes none.
 */
export const FILE_CHUNK_BYTES = 256 * 1024 - 64;

function toStoredFile(h: (string | null)[]): StoredFile | null {
  const [id, owner, bytes, createdAt, filename, purpose] = h;
  if (!id) return null;
  return { id, owner: owner!, bytes: Number(bytes), createdAt: Number(createdAt), filename: filename!, purpose: purpose! };
}

/** The file's identity and what publishing it needs. */
export interface FileUploadMeta {
  owner: string;
  filename: string;
  purpose: string;
}

/**
 * One upload in progress: `append` stages each chunk (awaited one at a time, so the caller can hold the request back
 * while Redis writes are pending), `publish` makes the file visible, `discard` removes whatever was staged.
 */
export class FileUpload {
  private chunks = 0;
  private bytes = 0;
  private state: 'open' | 'published' | 'discarded' = 'open';

  constructor(
    readonly id: string,
    private readonly redis: RedisClient,
    private readonly keys: StoreKeys,
    private readonly retentionSeconds: number,
  ) {}

  get size(): number {
    return this.bytes;
  }

  async append(chunk: Buffer): Promise<void> {
    if (this.state !== 'open') throw new Error(`upload ${this.id} is already ${this.state}`);
    if (chunk.length === 0) return;
    const key = this.keys.fileUpload(this.id);
    const tx = this.redis.multi();
    tx.rpush(key, chunk);
    tx.expire(key, UPLOAD_STAGING_TTL_S);
    const replies = await tx.exec();
    const failure = replies?.find(([error]) => error)?.[0];
    if (failure) throw failure;
    this.chunks++;
    this.bytes += chunk.length;
  }

  /** Makes the file visible under its id with every staged chunk; throws if the staged chunks are gone (expired). */
  async publish(meta: FileUploadMeta): Promise<StoredFile> {
    if (this.state !== 'open') throw new Error(`upload ${this.id} is already ${this.state}`);
    this.state = 'published';
    const stored: StoredFile = { id: this.id, owner: meta.owner, bytes: this.bytes, createdAt: Date.now(), filename: meta.filename, purpose: meta.purpose };
    const fields = {
      id: stored.id, owner: stored.owner, bytes: stored.bytes, created_at: stored.createdAt, filename: stored.filename, purpose: stored.purpose, chunks: this.chunks,
    };
    const published = await withStoreCommands(this.redis).falconqPublishFile(
      this.keys.fileUpload(this.id), this.keys.fileChunks(this.id), this.keys.file(this.id), this.keys.allFiles(), this.keys.ownerFiles(meta.owner),
      this.chunks, this.retentionSeconds, ...Object.entries(fields).flat(),
    );
    if (published !== 1) {
      await this.redis.del(this.keys.fileUpload(this.id));
      throw new Error(`upload ${this.id}: its staged chunks are gone (kept ${UPLOAD_STAGING_TTL_S} s after the last one)`);
    }
    return stored;
  }

  /** Deletes the staged chunks. Call it once no append is pending (an append still in flight would stage again). */
  async discard(): Promise<void> {
    this.state = 'discarded';
    await this.redis.del(this.keys.fileUpload(this.id));
  }
}

/** Uploaded files (their metadata and content), per owner. */
export class Files {
  private readonly keys: StoreKeys;

  constructor(private readonly redis: RedisClient, private readonly options: FilesOptions) {
    this.keys = new StoreKeys(options.prefix);
  }

  /** Starts an upload under a new file id; nothing is visible until it is published. */
  beginUpload(): FileUpload {
    return new FileUpload(`file-${randomBytes(12).toString('hex')}`, this.redis, this.keys, this.options.retentionSeconds);
  }

  /** A whole file at once (small files, tests): the same staging and publishing as a streamed upload. */
  async create(file: NewFile): Promise<StoredFile> {
    const upload = this.beginUpload();
    const content = Buffer.from(file.content, 'utf8');
    try {
      for (let offset = 0; offset < content.length; offset += FILE_CHUNK_BYTES) await upload.append(content.subarray(offset, offset + FILE_CHUNK_BYTES));
      return await upload.publish(file);
    } catch (error) {
      await upload.discard();
      throw error;
    }
  }

  async get(fileId: string): Promise<StoredFile | null> {
    return toStoredFile(await this.redis.hmget(this.keys.file(fileId), 'id', 'owner', 'bytes', 'created_at', 'filename', 'purpose'));
  }

  /**
   * The file's content, chunk by chunk as stored (never the whole file at once), or null if there is no such file. A
   * file stored before content was chunked holds it in its hash's `content` field: that is read as one chunk.
   */
  async content(fileId: string): Promise<AsyncIterable<Buffer> | null> {
    const [id, chunks] = await this.redis.hmget(this.keys.file(fileId), 'id', 'chunks');
    if (!id) return null;
    const redis = this.redis;
    const keys = this.keys;
    if (chunks === null) {
      const whole = await redis.hgetBuffer(keys.file(fileId), 'content');
      return (async function* () {
        if (whole && whole.length > 0) yield whole;
      })();
    }
    const count = Number(chunks);
    return (async function* () {
      for (let index = 0; index < count; index++) {
        const [chunk] = await redis.lrangeBuffer(keys.fileChunks(fileId), index, index);
        // Deleted (or expired) while being read: the content ends short rather than with another file's bytes.
        if (!chunk) throw new Error(`file ${fileId} was deleted while it was being read`);
        yield chunk;
      }
    })();
  }

  /** The whole content as one buffer that owns its memory (so it can move to another thread), or null. */
  async bytes(fileId: string): Promise<Buffer | null> {
    const file = await this.get(fileId);
    const chunks = file && (await this.content(fileId));
    if (!file || !chunks) return null;
    const whole = Buffer.allocUnsafeSlow(file.bytes);
    let offset = 0;
    for await (const chunk of chunks) {
      if (offset + chunk.length > whole.length) throw new Error(`file ${fileId} holds more than its ${file.bytes} bytes`);
      offset += chunk.copy(whole, offset);
    }
    if (offset !== whole.length) throw new Error(`file ${fileId} holds ${offset} of its ${file.bytes} bytes`);
    return whole;
  }

  async delete(fileId: string): Promise<boolean> {
    const owner = await this.redis.hget(this.keys.file(fileId), 'owner');
    if (owner === null) return false;
    const tx = this.redis.multi();
    tx.del(this.keys.file(fileId), this.keys.fileChunks(fileId));
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
