import { Inject, Injectable } from '@nestjs/common';
import type { Request, Response } from 'express';
import { FINAL_BATCH_STATUSES } from '@app/contracts';
import { batchOutputLines, finishedAtOf, type BatchRecord, type RedisStore, type StoredFile } from '@app/store';
import { ApiError } from '../http/api-error';
import { canSee, type Principal } from '../auth/principal';
import { API_CONFIG, type ApiConfig } from '../config/api-config';
import { STORE } from '../infra/infra.module';
import { errorFileIdOf, outputFileIdOf } from '../batches/batch-view';
import { receiveUpload } from './upload-stream';

// Uploaded files live in the store; a batch's output and error files are built from its results when asked for
// (so they are always consistent with the results, retries included).

const OUTPUT_FILE = /^file-(batch_[0-9a-f]+)-(output|errors)$/;
const PAGE = 1000;
const MAX_REMEMBERED_SIZES = 10_000;

export interface OpenAiFile {
  id: string;
  object: 'file';
  bytes: number;
  created_at: number;
  filename: string;
  purpose: string;
  status: 'processed';
  expires_at: number | null;
  status_details: null;
}

/** A file as the api describes it: stored (uploaded), or a batch's output/error file, with when it expires. */
export interface DescribedFile extends StoredFile {
  /** epoch ms; null = kept until deleted. */
  expiresAt: number | null;
}

export function toOpenAiFile(file: DescribedFile): OpenAiFile {
  return {
    id: file.id, object: 'file', bytes: file.bytes, created_at: Math.floor(file.createdAt / 1000), filename: file.filename,
    purpose: file.purpose, status: 'processed', expires_at: file.expiresAt === null ? null : Math.floor(file.expiresAt / 1000), status_details: null,
  };
}

type BatchFileKind = 'output' | 'errors';

@Injectable()
export class FilesService {
  private readonly sizes = new Map<string, number>();

  constructor(@Inject(STORE) private readonly store: RedisStore, @Inject(API_CONFIG) private readonly config: ApiConfig) {}

  /** Streams an upload from the request into the store (upload-stream.ts) and describes the published file. */
  async receive(principal: Principal, request: Request, response: Response): Promise<DescribedFile> {
    return this.uploaded(await receiveUpload(request, response, { files: this.store.files, owner: principal.tenant, maxFileBytes: this.config.limits.maxFileBytes }));
  }

  private uploaded(file: StoredFile): DescribedFile {
    const seconds = this.config.retention.fileSeconds;
    return { ...file, expiresAt: seconds > 0 ? file.createdAt + seconds * 1000 : null };
  }

  async describe(principal: Principal, fileId: string): Promise<DescribedFile> {
    const output = OUTPUT_FILE.exec(fileId);
    if (output) return this.batchFile(await this.finishedBatch(principal, output[1], fileId), output[2] as BatchFileKind);
    const file = await this.store.files.get(fileId);
    if (!file || !canSee(principal, file.owner)) throw ApiError.notFound('file', fileId);
    return this.uploaded(file);
  }

  /**
   * A batch's output or error file: created when the batch finished, kept as long as the batch (its retention). Its
   * size is measured once per state of the results (building the file is a read of every result), then remembered.
   */
  private async batchFile(batch: BatchRecord, which: BatchFileKind): Promise<DescribedFile> {
    const createdAt = finishedAtOf(batch) ?? batch.createdAt;
    const bytes = await this.batchFileBytes(batch, which, createdAt);
    const seconds = batch.retentionSeconds ?? this.config.retention.batchSeconds;
    return {
      id: which === 'output' ? batch.outputFileId : batch.errorFileId, owner: batch.owner, bytes, createdAt,
      filename: `${batch.id}_${which === 'output' ? 'output' : 'error'}.jsonl`, purpose: 'batch_output',
      expiresAt: seconds > 0 ? createdAt + seconds * 1000 : null,
    };
  }

  /**
   * A final batch's file never changes until retry-failed reopens it (which gives it a new finish time), so its size,
   * counted by building it once, is remembered per batch, file and finish time.
   */
  private async batchFileBytes(batch: BatchRecord, which: BatchFileKind, finishedAt: number): Promise<number> {
    const key = `${batch.id}:${which}:${finishedAt}`;
    const known = this.sizes.get(key);
    if (known !== undefined) return known;
    let bytes = 0;
    for await (const chunk of this.batchFileChunks(batch, which)) bytes += Buffer.byteLength(chunk);
    if (this.sizes.size >= MAX_REMEMBERED_SIZES) this.sizes.delete(this.sizes.keys().next().value!);
    this.sizes.set(key, bytes);
    return bytes;
  }

  /**
   * The file's content in chunks: an upload as the chunks it is stored in, an output file built page by page from the
   * results; neither is held whole.
   */
  async content(principal: Principal, fileId: string): Promise<AsyncIterable<string | Buffer>> {
    const output = OUTPUT_FILE.exec(fileId);
    if (output) return this.batchFileChunks(await this.finishedBatch(principal, output[1], fileId), output[2] as BatchFileKind);
    await this.describe(principal, fileId);
    const content = await this.store.files.content(fileId);
    if (content === null) throw ApiError.notFound('file', fileId);
    return content;
  }

  async remove(principal: Principal, fileId: string): Promise<void> {
    if (OUTPUT_FILE.test(fileId)) {
      throw ApiError.badRequest('Batch output files are deleted with their batch (retention); they cannot be deleted alone.', { param: 'file_id' });
    }
    await this.describe(principal, fileId);
    await this.store.files.delete(fileId);
  }

  /**
   * Uploaded files and the output/error files of finished OpenAI batches, newest first (OpenAI lists both), at most
   * `limit`; `purpose` filters ("batch" = uploads, "batch_output" = batch files).
   */
  async list(principal: Principal, limit: number, purpose?: string): Promise<DescribedFile[]> {
    const owner = principal.admin ? undefined : principal.tenant;
    const files: DescribedFile[] = [];
    if (purpose === undefined || purpose !== 'batch_output') {
      for (const file of await this.store.files.list(owner, limit)) if (purpose === undefined || file.purpose === purpose) files.push(this.uploaded(file));
    }
    if (purpose === undefined || purpose === 'batch_output') {
      const finished = await this.store.batches.list({ owner, kind: 'openai', statuses: [...FINAL_BATCH_STATUSES], limit });
      for (const batch of finished.data) {
        if (outputFileIdOf(batch)) files.push(await this.batchFile(batch, 'output'));
        if (errorFileIdOf(batch)) files.push(await this.batchFile(batch, 'errors'));
      }
    }
    return files.sort((a, b) => b.createdAt - a.createdAt || a.id.localeCompare(b.id)).slice(0, limit);
  }

  /** The batch behind an output/error file id, if the caller may see it and the batch has that file (else 404). */
  private async finishedBatch(principal: Principal, batchId: string, fileId: string): Promise<BatchRecord> {
    const batch = await this.store.batches.get(batchId);
    if (!batch || !canSee(principal, batch.owner) || (outputFileIdOf(batch) !== fileId && errorFileIdOf(batch) !== fileId)) throw ApiError.notFound('file', fileId);
    return batch;
  }

  async *batchFileChunks(batch: BatchRecord, which: BatchFileKind): AsyncGenerator<string> {
    for (let offset = 0; offset < batch.requestCounts.total; offset += PAGE) {
      const results = await this.store.results.list(batch.id, offset, PAGE);
      const customIds = (await this.store.batches.itemInputs(batch.id, results.map((_, i) => offset + i))).map((item, i) => item?.customId ?? `item-${offset + i}`);
      const page = batchOutputLines(batch, results, customIds, offset);
      const lines = which === 'output' ? page.output : page.errors;
      if (lines.length > 0) yield `${lines.join('\n')}\n`;
    }
  }
}
