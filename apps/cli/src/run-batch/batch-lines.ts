import type { GenerationParams } from '@app/engine';
import type { BatchEndpoint } from '@app/store';
import {
  LONE_SURROGATE_REASON, RequestParamError, batchLineSchema, describeZodIssue, loneSurrogateAt, prepareOpenAiRequest,
  type PromptModel,
} from '@app/requests';

// One line of an OpenAI batch input file, checked with the api's request rules (libs/requests): what to run, or why
// it cannot run.

const ENDPOINTS: readonly BatchEndpoint[] = ['/v1/completions', '/v1/chat/completions'];

export interface RunnableLine {
  kind: 'run';
  customId: string;
  endpoint: BatchEndpoint;
  prompt: string;
  params: GenerationParams;
}

export interface RefusedLine {
  kind: 'refused';
  customId: string | null;
  code: string;
  message: string;
}

export function checkBatchLine(text: string, line: number, model: PromptModel, seen: Map<string, number>): RunnableLine | RefusedLine {
  const refuse = (customId: string | null, field: string | null, reason: string, code = 'invalid_request'): RefusedLine => ({
    kind: 'refused', customId, code, message: `line ${line}${field ? `, ${field}` : ''}: ${reason}`,
  });
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    return refuse(null, null, `not valid JSON (${(error as Error).message})`);
  }
  const illFormed = loneSurrogateAt(parsed);
  if (illFormed !== null) return refuse(null, illFormed, LONE_SURROGATE_REASON);
  const shape = batchLineSchema.safeParse(parsed);
  if (!shape.success) {
    const issue = describeZodIssue(shape.error);
    const customId = typeof (parsed as { custom_id?: unknown })?.custom_id === 'string' ? (parsed as { custom_id: string }).custom_id : null;
    return refuse(customId, issue.field, issue.message);
  }
  const { custom_id: customId, method, url, body } = shape.data;
  if (method !== 'POST') return refuse(customId, 'method', `must be "POST", got "${method}"`);
  if (!(ENDPOINTS as readonly string[]).includes(url)) return refuse(customId, 'url', `"${url}" is not one of ${ENDPOINTS.join(', ')}`);
  const earlier = seen.get(customId);
  if (earlier !== undefined) return refuse(customId, 'custom_id', `"${customId}" duplicates line ${earlier}; custom_id must be unique`, 'duplicate_custom_id');
  seen.set(customId, line);
  if (body.stream === true) return refuse(customId, 'body.stream', 'streaming is not available in a batch');
  try {
    const prepared = prepareOpenAiRequest(url as BatchEndpoint, body, model);
    return { kind: 'run', customId, endpoint: url as BatchEndpoint, prompt: prepared.prompt, params: prepared.params };
  } catch (error) {
    if (error instanceof RequestParamError) return refuse(customId, `body.${error.field}`, error.reason);
    throw error;
  }
}
