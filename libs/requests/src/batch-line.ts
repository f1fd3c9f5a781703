import type { BatchEndpoint, BatchItemInput } from '@app/store';
import { RequestParamError } from './generation-params';
import { CONTEXT_LENGTH_EXCEEDED, UnknownModelError, prepareOpenAiRequest, type PromptModel } from './prompt-builder';
import { LONE_SURROGATE_REASON, batchLineSchema, describeZodIssue, loneSurrogateAt } from './request-schemas';

// One line of an OpenAI batch input file, checked: the item it runs, or OpenAI's errors.data entry saying why it
// cannot run. The api checks uploaded files with it; `falconq run-batch` checks its input with it.

export const SUPPORTED_ENDPOINTS: readonly BatchEndpoint[] = ['/v1/completions', '/v1/chat/completions'];

/** One line of an input file that cannot run: OpenAI's errors.data entry (line 1-based, as an editor shows it). */
export interface LineProblem {
  code: string;
  line: number;
  param: string | null;
  message: string;
}

export const lineProblem = (line: number, param: string | null, message: string, code = 'invalid_batch_line'): LineProblem => ({ code, line, param, message });

/**
 * The checks of one line: its item (with the endpoint it asks for), or its problem. `endpoint`: the batch's endpoint
 * every line must name, or null to accept any supported one per line.
 */
export function checkBatchLine(text: string, line: number, endpoint: BatchEndpoint | null, model: PromptModel, lineOfCustomId: Map<string, number>, index: number): { item: BatchItemInput; endpoint: BatchEndpoint; promptTokens: number } | LineProblem {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    return lineProblem(line, null, `not valid JSON (${(error as Error).message})`);
  }
  const illFormed = loneSurrogateAt(parsed);
  if (illFormed !== null) return lineProblem(line, illFormed, LONE_SURROGATE_REASON);
  const shape = batchLineSchema.safeParse(parsed);
  if (!shape.success) {
    const issue = describeZodIssue(shape.error);
    return lineProblem(line, issue.field, issue.message);
  }
  const { custom_id: customId, method, url, body } = shape.data;
  if (method !== 'POST') return lineProblem(line, 'method', `must be "POST", got "${method}"`);
  if (endpoint !== null && url !== endpoint) return lineProblem(line, 'url', `"${url}" does not match the batch's endpoint "${endpoint}"`);
  if (!(SUPPORTED_ENDPOINTS as readonly string[]).includes(url)) return lineProblem(line, 'url', `"${url}" is not one of ${SUPPORTED_ENDPOINTS.join(', ')}`);
  const lineEndpoint = url as BatchEndpoint;
  const earlier = lineOfCustomId.get(customId);
  if (earlier !== undefined) return lineProblem(line, 'custom_id', `"${customId}" duplicates line ${earlier}; custom_id must be unique within a batch`, 'duplicate_custom_id');
  lineOfCustomId.set(customId, line);
  if (body.stream === true) return lineProblem(line, 'body.stream', 'streaming is not available in a batch');
  try {
    const prepared = prepareOpenAiRequest(lineEndpoint, body, model);
    if (prepared.prompts.length > 1) return lineProblem(line, 'body.prompt', `holds ${prepared.prompts.length} prompts; a batch line holds one (put each prompt on its own line)`);
    if (prepared.echoOnly) return lineProblem(line, 'body.max_tokens', 'is 0 (echo only): answered by POST /v1/completions, not in a batch');
    const [prompt] = prepared.prompts;
    const item: BatchItemInput = { index, customId, prompt: prompt.prompt, params: prepared.params };
    if (prompt.promptIds) item.promptIds = prompt.promptIds;
    return { item, endpoint: lineEndpoint, promptTokens: prompt.promptTokens };
  } catch (error) {
    if (error instanceof RequestParamError) return lineProblem(line, `body.${error.field}`, error.reason, error.code === CONTEXT_LENGTH_EXCEEDED ? error.code : 'invalid_batch_line');
    if (error instanceof UnknownModelError) return lineProblem(line, 'body.model', error.message, 'model_not_found');
    throw error;
  }
}

