import type { BatchEndpoint, BatchItemInput } from '@app/store';
import { ApiError, lineError } from '../http/api-error';
import { RequestParamError, paramsFromNative } from '../generation/generation-params';
import { checkPromptFits, prepareOpenAiRequest } from '../generation/prompt-builder';
import { LONE_SURROGATE_REASON, batchLineSchema, describeZodIssue, loneSurrogateAt, nativeBatchSchema, type NativeBatchRequest } from '../generation/request-schemas';
import type { ServedModel } from '../model/served-model';

// Turns a batch's input (an OpenAI JSONL file, or a native JSON body) into the items to enqueue, checking everything
// first: a rejected batch stores and enqueues nothing.

export const SUPPORTED_ENDPOINTS: readonly BatchEndpoint[] = ['/v1/completions', '/v1/chat/completions'];

export function parseEndpoint(value: string): BatchEndpoint {
  if (!(SUPPORTED_ENDPOINTS as readonly string[]).includes(value)) {
    throw ApiError.badRequest(`endpoint "${value}" is not supported; use one of ${SUPPORTED_ENDPOINTS.join(', ')}`, { param: 'endpoint', code: 'invalid_endpoint' });
  }
  return value as BatchEndpoint;
}

export interface InputLimits {
  maxLines: number;
}

/** Parses and checks every line of an OpenAI batch input file. Line numbers are 1-based, as an editor shows them. */
export function itemsFromJsonl(content: string, endpoint: BatchEndpoint, model: ServedModel, limits: InputLimits): BatchItemInput[] {
  const lines = content.split('\n');
  const requests = lines.filter((l) => l.trim() !== '').length;
  if (requests === 0) throw ApiError.badRequest('input file has no requests (expected one JSON object per line)', { param: 'input_file_id', code: 'empty_file' });
  if (requests > limits.maxLines) {
    throw ApiError.badRequest(`input file has ${requests} requests; a batch may hold at most ${limits.maxLines} (FALCONQ_MAX_LINES)`, { param: 'input_file_id', code: 'too_many_requests' });
  }
  const items: BatchItemInput[] = [];
  const lineOfCustomId = new Map<string, number>();
  lines.forEach((raw, i) => {
    const line = i + 1;
    const text = raw.trim();
    if (text === '') return;
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (error) {
      throw lineError(line, null, `not valid JSON (${(error as Error).message})`);
    }
    const illFormed = loneSurrogateAt(parsed);
    if (illFormed !== null) throw lineError(line, illFormed, LONE_SURROGATE_REASON);
    const shape = batchLineSchema.safeParse(parsed);
    if (!shape.success) {
      const issue = describeZodIssue(shape.error);
      throw lineError(line, issue.field, issue.message);
    }
    const { custom_id: customId, method, url, body } = shape.data;
    if (method !== 'POST') throw lineError(line, 'method', `must be "POST", got "${method}"`);
    if (url !== endpoint) throw lineError(line, 'url', `"${url}" does not match the batch's endpoint "${endpoint}"`);
    const earlier = lineOfCustomId.get(customId);
    if (earlier !== undefined) {
      throw lineError(line, 'custom_id', `"${customId}" duplicates line ${earlier}; custom_id must be unique within a batch`);
    }
    lineOfCustomId.set(customId, line);
    if (body.stream === true) throw lineError(line, 'body.stream', 'streaming is not available in a batch');
    try {
      const prepared = prepareOpenAiRequest(endpoint, body, model);
      items.push({ index: items.length, customId, prompt: prepared.prompt, params: prepared.params });
    } catch (error) {
      if (error instanceof RequestParamError) throw lineError(line, `body.${error.field}`, error.reason);
      throw error;
    }
  });
  return items;
}

const PLACEHOLDER = /\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

export function renderTemplate(template: string, row: Record<string, string | number | boolean>, rowIndex: number): string {
  return template.replace(PLACEHOLDER, (_, name: string) => {
    if (!(name in row)) throw new RequestParamError(`rows[${rowIndex}].${name}`, `is missing: the template uses {${name}}`);
    return String(row[name]);
  });
}

export interface NativeBatchInput {
  items: BatchItemInput[];
  request: NativeBatchRequest;
}

/** Checks a native POST /batches body: prompts, or a template with rows, plus the shared parameters. */
export function itemsFromNative(body: unknown, model: ServedModel, limits: InputLimits): NativeBatchInput {
  const illFormed = loneSurrogateAt(body);
  if (illFormed !== null) throw ApiError.badRequest(`${illFormed}: ${LONE_SURROGATE_REASON}`, { param: illFormed, code: 'invalid_parameter' });
  const parsed = nativeBatchSchema.safeParse(body);
  if (!parsed.success) {
    const issue = describeZodIssue(parsed.error);
    throw ApiError.badRequest(`${issue.field}: ${issue.message}`, { param: issue.field, code: 'invalid_parameter' });
  }
  const request = parsed.data;
  if ((request.prompts === undefined) === (request.template === undefined)) {
    throw ApiError.badRequest('send either prompts, or template with rows', { param: 'prompts', code: 'invalid_parameter' });
  }
  if (request.template !== undefined && request.rows === undefined) {
    throw ApiError.badRequest('rows: required with template', { param: 'rows', code: 'invalid_parameter' });
  }
  const count = request.prompts?.length ?? request.rows!.length;
  if (count > limits.maxLines) {
    const field = request.prompts ? 'prompts' : 'rows';
    throw ApiError.badRequest(`${field}: has ${count} entries; a batch may hold at most ${limits.maxLines} (FALCONQ_MAX_LINES)`, { param: field, code: 'too_many_requests' });
  }
  try {
    const params = paramsFromNative(request, model.contextLength);
    const prompts = request.prompts ?? request.rows!.map((row, i) => renderTemplate(request.template!, row, i));
    const items = prompts.map((prompt, index) => {
      const field = request.prompts ? `prompts[${index}]` : `rows[${index}]`;
      checkPromptFits(model, prompt, params, field, 'max_new_tokens');
      return { index, customId: `item-${index}`, prompt, params };
    });
    return { items, request };
  } catch (error) {
    if (error instanceof RequestParamError) {
      throw ApiError.badRequest(`${error.field}: ${error.reason}`, { param: error.field, code: 'invalid_parameter' });
    }
    throw error;
  }
}
