import { Inject, Injectable } from '@nestjs/common';
import { batchOutputLines, isFinalStatus, type BatchRecord, type ResultsStore, type StoredFile } from '@app/store';
import { ApiError } from '../http/api-error';
import { canSee, type Principal } from '../auth/principal';
import { RESULTS_STORE } from '../infra/infra.module';

// Uploaded files live in the store; a batch's output and error files are built from its results when asked for
// (so they are always consistent with the results, retries included).

const OUTPUT_FILE = /^file-(batch_[0-9a-f]+)-(output|errors)$/;
const PAGE = 1000;

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

export function toOpenAiFile(file: StoredFile): OpenAiFile {
  return {
    id: file.id, object: 'file', bytes: file.bytes, created_at: Math.floor(file.createdAt / 1000), filename: file.filename,
    purpose: file.purpose, status: 'processed', expires_at: null, status_details: null,
  };
}

@Injectable()
export class FilesService {
  constructor(@Inject(RESULTS_STORE) private readonly store: ResultsStore) {}

  async upload(principal: Principal, filename: string, purpose: string, content: string): Promise<StoredFile> {
    return this.store.createFile({ owner: principal.tenant, filename, purpose, content });
  }

  async describe(principal: Principal, fileId: string): Promise<StoredFile> {
    const output = OUTPUT_FILE.exec(fileId);
    if (output) {
      const batch = await this.finishedBatch(principal, output[1], fileId);
      let bytes = 0;
      for await (const chunk of this.batchFileChunks(batch, output[2] as 'output' | 'errors')) bytes += Buffer.byteLength(chunk);
      return { id: fileId, owner: batch.owner, bytes, createdAt: batch.completedAt ?? batch.cancelledAt ?? batch.expiredAt ?? batch.failedAt ?? batch.createdAt,
        filename: `${batch.id}_${output[2] === 'output' ? 'output' : 'error'}.jsonl`, purpose: output[2] === 'output' ? 'batch_output' : 'batch_output' };
    }
    const file = await this.store.getFile(fileId);
    if (!file || !canSee(principal, file.owner)) throw ApiError.notFound('file', fileId);
    return file;
  }

  /** The file's content in chunks: an output file is built page by page from the results, never held whole. */
  async content(principal: Principal, fileId: string): Promise<AsyncIterable<string>> {
    const output = OUTPUT_FILE.exec(fileId);
    if (output) return this.batchFileChunks(await this.finishedBatch(principal, output[1], fileId), output[2] as 'output' | 'errors');
    await this.describe(principal, fileId);
    const content = await this.store.getFileContent(fileId);
    if (content === null) throw ApiError.notFound('file', fileId);
    return (async function* () {
      yield content;
    })();
  }

  async remove(principal: Principal, fileId: string): Promise<void> {
    if (OUTPUT_FILE.test(fileId)) {
      throw ApiError.badRequest('Batch output files are deleted with their batch (retention); they cannot be deleted alone.', { param: 'file_id' });
    }
    await this.describe(principal, fileId);
    await this.store.deleteFile(fileId);
  }

  async list(principal: Principal, limit: number): Promise<StoredFile[]> {
    return this.store.listFiles(principal.admin ? undefined : principal.tenant, limit);
  }

  private async finishedBatch(principal: Principal, batchId: string, fileId: string): Promise<BatchRecord> {
    const batch = await this.store.getBatch(batchId);
    if (!batch || !canSee(principal, batch.owner) || !isFinalStatus(batch.status)) throw ApiError.notFound('file', fileId);
    return batch;
  }

  async *batchFileChunks(batch: BatchRecord, which: 'output' | 'errors'): AsyncGenerator<string> {
    for (let offset = 0; offset < batch.requestCounts.total; offset += PAGE) {
      const results = await this.store.listResults(batch.id, offset, PAGE);
      const customIds = (await this.store.getItemInputs(batch.id, results.map((_, i) => offset + i))).map((item) => item.customId);
      const page = batchOutputLines(batch, results, customIds, offset);
      const lines = which === 'output' ? page.output : page.errors;
      if (lines.length > 0) yield `${lines.join('\n')}\n`;
    }
  }
}
