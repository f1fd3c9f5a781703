import busboy from 'busboy';
import type { Request, Response } from 'express';
import { FILE_CHUNK_BYTES, type FileUpload, type Files, type StoredFile } from '@app/store';
import { ApiError } from '../http/api-error';
import { discardRestOfBody } from '../http/request-guards';
import { MULTIPART_ENVELOPE_BYTES } from './upload-budget';
import { Utf8StreamCheck } from './utf8-stream';

// POST /v1/files as a stream: the multipart body is parsed as it arrives, the file part is checked (UTF-8, size) and
// written to Redis in chunks of about FILE_CHUNK_BYTES, and the request is held back while a chunk is being written,
// so an upload takes about one chunk of the api's memory whatever its size. The file is published only once the whole
// body has arrived and passed; an upload that is refused or cut off leaves nothing behind.

export interface UploadStreamOptions {
  files: Pick<Files, 'beginUpload'>;
  owner: string;
  maxFileBytes: number;
}

const invalidUtf8 = () => ApiError.badRequest('file: is not valid UTF-8 text', { param: 'file' });
const tooLarge = (limit: number) => ApiError.tooLarge(`Upload is larger than FALCONQ_MAX_FILE_BYTES (${limit} bytes).`, 'file');

/** The purpose an upload must have, checked with the wording the api has always used. */
export function purposeProblem(purpose: string | undefined): ApiError | null {
  if (purpose === 'batch') return null;
  return ApiError.badRequest(`purpose: must be "batch", got ${purpose === undefined ? 'nothing' : `"${purpose}"`}`, { param: 'purpose' });
}

/** Reads one upload from the request into the store; resolves with the published file, or rejects with why not. */
export function receiveUpload(request: Request, response: Response, options: UploadStreamOptions): Promise<StoredFile> {
  return new Promise<StoredFile>((resolve, reject) => {
    let purpose: string | undefined;
    let filename = '';
    let upload: FileUpload | null = null;
    let fileStream: busboy.FileStream | null = null;
    let receiving: Promise<void> | null = null;
    let failure: Error | null = null;
    let publishing = false;
    // Strict: invalid bytes are refused, while a U+FFFD the file really holds (model output does) is kept. The bytes
    // are checked, not decoded: the file is stored exactly as sent, a leading BOM included.
    const utf8 = new Utf8StreamCheck();

    const fail = (error: Error): void => {
      if (failure || publishing) return;
      failure = error;
      // Stop parsing; what the client still sends is read and dropped (and cut off if it goes on for long).
      request.unpipe(parser);
      request.resume();
      discardRestOfBody(request, response);
      fileStream?.destroy();
      void (async () => {
        // The chunk being written (if any) lands first, then every staged chunk goes.
        await receiving?.catch(() => undefined);
        await upload?.discard().catch(() => undefined);
        reject(error);
      })();
    };

    /**
     * Copies the file part into the upload, checking it as it goes; any problem fails the whole request. The pieces are
     * gathered in one buffer of FILE_CHUNK_BYTES, written to Redis when full and then filled again: a long upload makes
     * no garbage of its own.
     */
    const copy = async (stream: busboy.FileStream, target: FileUpload): Promise<void> => {
      const chunk = Buffer.allocUnsafeSlow(FILE_CHUNK_BYTES);
      let filled = 0;
      for await (const piece of stream as AsyncIterable<Buffer>) {
        if (failure) return;
        if (!utf8.push(piece)) throw invalidUtf8();
        for (let offset = 0; offset < piece.length;) {
          const copied = piece.copy(chunk, filled, offset);
          filled += copied;
          offset += copied;
          if (filled === chunk.length) {
            // Awaited: until Redis has the chunk the file stream is not read, so the parser and the request pause.
            // The chunk is filled again only after Redis answered, when the command no longer holds it.
            await target.append(chunk);
            filled = 0;
          }
        }
      }
      if (failure) return;
      if (!utf8.end()) throw invalidUtf8();
      if (filled > 0) await target.append(chunk.subarray(0, filled));
    };

    let parser: busboy.Busboy;
    try {
      parser = busboy({
        headers: request.headers,
        defParamCharset: 'latin1',
        limits: { files: 1, fields: 10, parts: 20, fieldSize: MULTIPART_ENVELOPE_BYTES, fileSize: options.maxFileBytes },
      });
    } catch (error) {
      request.resume();
      discardRestOfBody(request, response);
      reject(ApiError.badRequest(`file: the body is not a multipart form (${(error as Error).message})`, { param: 'file' }));
      return;
    }

    parser.on('field', (name, value) => {
      if (name !== 'purpose') return;
      purpose = value;
      // A wrong purpose sent before the file refuses the upload before any of it is stored.
      const problem = purposeProblem(purpose);
      if (problem) fail(problem);
    });
    parser.on('file', (name, stream, info) => {
      if (failure) {
        stream.resume();
        return;
      }
      if (name !== 'file') {
        stream.resume();
        fail(ApiError.badRequest(`${name}: unexpected file field; send the JSONL file as the multipart field "file"`, { param: name }));
        return;
      }
      fileStream = stream;
      filename = info.filename ?? '';
      const target = options.files.beginUpload();
      upload = target;
      stream.on('limit', () => fail(tooLarge(options.maxFileBytes)));
      receiving = copy(stream, target).catch((error: unknown) => fail(error instanceof Error ? error : new Error(String(error))));
    });
    parser.on('filesLimit', () => fail(ApiError.badRequest('file: send one file per upload', { param: 'file' })));
    parser.on('fieldsLimit', () => fail(ApiError.badRequest('the upload form has too many fields (send "purpose" and "file")', { param: null })));
    parser.on('partsLimit', () => fail(ApiError.badRequest('the upload form has too many parts (send "purpose" and "file")', { param: null })));
    parser.on('error', (error) => fail(ApiError.badRequest(`file: the multipart body is malformed (${error.message})`, { param: 'file' })));
    parser.on('close', () => {
      void (async () => {
        await receiving;
        if (failure) return;
        if (!upload) return fail(ApiError.badRequest('file: missing; send the JSONL file as the multipart field "file"', { param: 'file' }));
        const problem = purposeProblem(purpose);
        if (problem) return fail(problem);
        publishing = true;
        try {
          resolve(await upload.publish({ owner: options.owner, filename: filename || 'upload.jsonl', purpose: purpose! }));
        } catch (error) {
          await upload.discard().catch(() => undefined);
          reject(error as Error);
        }
      })();
    });
    // A client that goes away mid-upload: nothing more will come, so what was staged is removed.
    request.on('close', () => {
      if (!request.complete) fail(ApiError.badRequest('file: the upload was cut off before its end', { param: 'file' }));
    });
    request.on('error', (error) => fail(error));
    request.pipe(parser);
  });
}
