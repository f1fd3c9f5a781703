import { InvalidGenerationParamError, resolveGenerationParams, type GenerationParams } from '@app/engine';
import type { ChatRequest, CompletionRequest, NativeBatchRequest } from './request-schemas';

// Request parameters -> the engine's GenerationParams, with the engine's own range rules. Errors name the field as
// the client wrote it (max_tokens, not maxNewTokens).

export type ParamNames = Partial<Record<keyof GenerationParams | 'prompt', string>>;

export const OPENAI_NAMES: ParamNames = {
  maxNewTokens: 'max_tokens', doSample: 'do_sample', temperature: 'temperature', topK: 'top_k', topP: 'top_p',
  repetitionPenalty: 'repetition_penalty', stop: 'stop', numReturnSequences: 'n', returnFullText: 'echo',
  ignoreEos: 'ignore_eos', truncate: 'truncate', seed: 'seed', prompt: 'prompt', logprobs: 'logprobs', promptLogprobs: 'echo',
};

export const NATIVE_NAMES: ParamNames = {
  maxNewTokens: 'max_new_tokens', doSample: 'do_sample', temperature: 'temperature', topK: 'top_k', topP: 'top_p',
  repetitionPenalty: 'repetition_penalty', stop: 'stop', numReturnSequences: 'num_return_sequences',
  returnFullText: 'return_full_text', ignoreEos: 'ignore_eos', truncate: 'truncate', seed: 'seed', prompt: 'prompt',
};

/** A request parameter that is wrong: `field` as the client named it. */
export class RequestParamError extends Error {
  constructor(readonly field: string, readonly reason: string, readonly code = 'invalid_parameter') {
    super(`${field} ${reason}`);
  }
}

export function clientFieldOf(engineField: string, names: ParamNames): string {
  const match = /^(\w+)(.*)$/.exec(engineField);
  if (!match) return engineField;
  return (names[match[1] as keyof ParamNames] ?? match[1]) + match[2];
}

/** The engine's messages use its own names (doSample); the client should read the ones it sent (do_sample). */
export function inClientNames(text: string, names: ParamNames): string {
  return Object.entries(names).reduce((acc, [engine, client]) => acc.replace(new RegExp(`\\b${engine}\\b`, 'g'), client!), text);
}

export function resolveParams(partial: Partial<GenerationParams>, names: ParamNames, contextLength: number): GenerationParams {
  try {
    return resolveGenerationParams(partial, { contextLength });
  } catch (error) {
    if (error instanceof InvalidGenerationParamError) throw new RequestParamError(clientFieldOf(error.field, names), inClientNames(error.reason, names));
    throw error;
  }
}

const defined = <T extends object>(o: T): Partial<T> =>
  Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined && v !== null)) as Partial<T>;

/** Each parameter falconq cannot honour, refused with its reason when it asks for anything (never ignored). */
function refuseUnsupported(body: CompletionRequest | ChatRequest): void {
  if (body.best_of !== undefined && body.best_of !== null && body.best_of !== 1) throw new RequestParamError('best_of', 'is not supported (use n)');
  if (body.presence_penalty) throw new RequestParamError('presence_penalty', 'is not supported (use repetition_penalty)');
  if (body.frequency_penalty) throw new RequestParamError('frequency_penalty', 'is not supported (use repetition_penalty)');
  if (body.logit_bias && Object.keys(body.logit_bias).length > 0) throw new RequestParamError('logit_bias', 'is not supported');
  if (body.min_p) throw new RequestParamError('min_p', 'is not supported (use top_p or top_k)');
  if (body.min_tokens) throw new RequestParamError('min_tokens', 'is not supported (use ignore_eos with max_tokens)');
  if ('suffix' in body && body.suffix) throw new RequestParamError('suffix', 'is not supported: Falcon has no fill-in-the-middle mode');
  if ('messages' in body) {
    if (body.tools && body.tools.length > 0) throw new RequestParamError('tools', 'is not supported: falconq serves a model without tool calling');
    if (body.tool_choice !== undefined && body.tool_choice !== null && body.tool_choice !== 'none') {
      throw new RequestParamError('tool_choice', 'is not supported: falconq serves a model without tool calling (only "none")');
    }
    const format = body.response_format as { type?: unknown } | null | undefined;
    if (format !== undefined && format !== null && format.type !== 'text') {
      throw new RequestParamError('response_format', 'is not supported: falconq does not constrain output to JSON or a schema (only {"type": "text"})');
    }
  }
}

/** How many top alternatives per token the request asks for (completions: logprobs; chat: top_logprobs). */
function requestedLogprobs(body: CompletionRequest | ChatRequest): number | undefined {
  if ('messages' in body) {
    const chat = body as ChatRequest;
    if (chat.top_logprobs !== undefined && chat.top_logprobs !== null && chat.logprobs !== true) {
      throw new RequestParamError('top_logprobs', 'needs logprobs set to true');
    }
    return chat.logprobs === true ? (chat.top_logprobs ?? 0) : undefined;
  }
  const completion = body as CompletionRequest;
  if (completion.logprobs === undefined || completion.logprobs === null) return undefined;
  return completion.logprobs;
}

/** Completions with echo and logprobs: the prompt's tokens get log-probabilities too (OpenAI's legacy "scoring"). */
function wantsPromptLogprobs(body: CompletionRequest | ChatRequest): boolean {
  return 'echo' in body && body.echo === true && 'prompt' in body && body.logprobs !== undefined && body.logprobs !== null;
}

/**
 * max_tokens 0 with echo (completions) and no logprobs: the answer is the prompt itself, nothing runs. With logprobs
 * the prompt is scored by a worker (and nothing is generated).
 */
export function isEchoOnly(body: CompletionRequest | ChatRequest): boolean {
  const maxTokens = body.max_tokens ?? body.max_completion_tokens;
  return maxTokens === 0 && 'echo' in body && body.echo === true && !wantsPromptLogprobs(body);
}

/**
 * OpenAI semantics: temperature defaults to 1 and samples; temperature 0 means greedy. `do_sample` overrides.
 * n > 1 with temperature 0 gives n greedy copies, as OpenAI does (sampling from the single top token is greedy).
 */
export function paramsFromOpenAi(body: CompletionRequest | ChatRequest, contextLength: number): GenerationParams {
  refuseUnsupported(body);
  const temperature = body.temperature ?? 1;
  if (temperature < 0 || temperature > 2) throw new RequestParamError('temperature', `must be between 0 and 2, got ${temperature}`);
  if (temperature === 0 && body.do_sample === true) {
    throw new RequestParamError('temperature', 'is 0, which means greedy decoding, but do_sample is true: set temperature above 0 to sample, or leave do_sample out');
  }
  const n = body.n ?? 1;
  const greedyCopies = temperature === 0 && n > 1 && (body.do_sample === undefined || body.do_sample === null);
  const doSample = greedyCopies || (body.do_sample ?? temperature > 0);
  const stop = body.stop === undefined || body.stop === null ? undefined : typeof body.stop === 'string' ? [body.stop] : body.stop;
  const echoOnly = isEchoOnly(body);
  const partial: Partial<GenerationParams> = defined({
    // Echo-only requests never run: their params are checked as for one token.
    maxNewTokens: echoOnly ? 1 : (body.max_tokens ?? body.max_completion_tokens ?? undefined),
    doSample,
    temperature: temperature > 0 ? temperature : undefined,
    topK: greedyCopies ? 1 : (body.top_k ?? undefined),
    topP: body.top_p ?? undefined,
    repetitionPenalty: body.repetition_penalty ?? undefined,
    stop,
    numReturnSequences: body.n ?? undefined,
    returnFullText: 'echo' in body && typeof body.echo === 'boolean' ? body.echo : undefined,
    ignoreEos: body.ignore_eos ?? undefined,
    truncate: body.truncate ?? undefined,
    seed: body.seed ?? undefined,
    logprobs: requestedLogprobs(body),
    promptLogprobs: wantsPromptLogprobs(body) || undefined,
  });
  return resolveParams(partial, OPENAI_NAMES, contextLength);
}

export function paramsFromNative(body: NativeBatchRequest, contextLength: number): GenerationParams {
  const partial: Partial<GenerationParams> = defined({
    maxNewTokens: body.max_new_tokens,
    doSample: body.do_sample,
    temperature: body.temperature,
    topK: body.top_k,
    topP: body.top_p,
    repetitionPenalty: body.repetition_penalty,
    stop: body.stop,
    numReturnSequences: body.num_return_sequences,
    returnFullText: body.return_full_text,
    ignoreEos: body.ignore_eos,
    truncate: body.truncate,
    seed: body.seed,
  });
  return resolveParams(partial, NATIVE_NAMES, contextLength);
}
