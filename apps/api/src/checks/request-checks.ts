import { HttpStatus } from '@nestjs/common/enums/http-status.enum';
import type { BatchEndpoint } from '@app/store';
import { checkJsonl, itemsFromNative, type CheckedJsonl, type InputLimits, type NativeBatchInput } from '../batches/batch-input';
import { RequestParamError } from '@app/requests';
import { UnknownModelError, prepareOpenAiRequest, type PreparedRequest } from '@app/requests';
import { ApiError, type ApiErrorBody } from '../http/api-error';
import { decodeUtf8, joinedBody, type BodyBytes } from '../http/body-bytes';
import type { ServedModel } from '../model/served-model';

// The CPU-heavy part of accepting a request (JSON lines, schemas, template rendering, tokenizing every prompt), as
// plain data in and out so it can run on a thread beside the event loop (request-checker.ts).

export type CheckTask =
  | { kind: 'native'; body: unknown }
  /** content: the file's UTF-8 bytes (checked to be UTF-8 when it was uploaded), decoded where the check runs. */
  | { kind: 'jsonl'; content: string | Uint8Array; endpoint: BatchEndpoint }
  | { kind: 'online'; endpoint: BatchEndpoint; body: unknown };

export type CheckValue<T extends CheckTask> = T extends { kind: 'native' } ? NativeBatchInput
  : T extends { kind: 'jsonl' } ? CheckedJsonl
    : PreparedRequest;

export type CheckOutcome =
  | { ok: true; value: NativeBatchInput | CheckedJsonl | PreparedRequest }
  | { ok: false; status: number; body: ApiErrorBody };

function prepareOnline(endpoint: BatchEndpoint, body: unknown, model: ServedModel): PreparedRequest {
  try {
    return prepareOpenAiRequest(endpoint, body, model);
  } catch (error) {
    if (error instanceof RequestParamError) throw ApiError.badRequest(`${error.field}: ${error.reason}`, { param: error.field, code: error.code });
    if (error instanceof UnknownModelError) throw new ApiError(HttpStatus.NOT_FOUND, 'invalid_request_error', error.message, { param: 'model', code: 'model_not_found' });
    throw error;
  }
}

/**
 * A JSON body as the check receives it: raw bytes for the routes whose bodies can be large (the api hands them over
 * unparsed, so neither decoding nor JSON.parse runs on its event loop), or a value parsed already.
 */
export function parsedBody(received: unknown): unknown {
  const isBytes = received instanceof Uint8Array || (Array.isArray(received) && received.length > 0 && received.every((b) => b instanceof Uint8Array));
  if (!isBytes) return received;
  const text = decodeUtf8(joinedBody(received as BodyBytes), 'Request body');
  try {
    return JSON.parse(text);
  } catch (error) {
    throw ApiError.badRequest(`Request body could not be parsed as JSON: ${(error as Error).message}`, { code: 'invalid_json' });
  }
}

function textOf(content: string | Uint8Array): string {
  if (typeof content === 'string') return content;
  // Node's UTF-8 decoding keeps a leading BOM, as the stored file does (the line checks trim it).
  return Buffer.from(content.buffer, content.byteOffset, content.byteLength).toString('utf8');
}

/** Runs one check; a refusal comes back as the ApiError's status and body (errors do not cross threads as classes). */
export function runCheck(task: CheckTask, model: ServedModel, limits: InputLimits): CheckOutcome {
  try {
    switch (task.kind) {
      case 'native': {
        const body = parsedBody(task.body);
        // A dry run lists every prompt that does not fit instead of refusing the batch at the first.
        const dryRun = typeof body === 'object' && body !== null && (body as { dry_run?: unknown }).dry_run === true;
        return { ok: true, value: itemsFromNative(body, model, limits, dryRun) };
      }
      case 'jsonl': return { ok: true, value: checkJsonl(textOf(task.content), task.endpoint, model, limits) };
      case 'online': return { ok: true, value: prepareOnline(task.endpoint, parsedBody(task.body), model) };
    }
  } catch (error) {
    if (error instanceof ApiError) return { ok: false, status: error.getStatus(), body: error.getResponse() };
    if (error instanceof Error && (error as { status?: number }).status === 400) {
      return { ok: false, status: 400, body: { error: { message: error.message, type: 'invalid_request_error', param: null, code: 'invalid_utf8' } } };
    }
    throw error;
  }
}

/** The ApiError a refused check stands for, rebuilt on the calling side. */
export function refusalOf(outcome: Extract<CheckOutcome, { ok: false }>): ApiError {
  const { message, type, param, code, line } = outcome.body.error;
  return new ApiError(outcome.status, type, message, { param, code, line });
}
