import { InvalidGenerationParamError, resolveGenerationParams, type GenerationParams } from '@app/engine';
import type { ChatRequest, CompletionRequest, NativeBatchRequest } from './request-schemas';

// Request parameters -> the engine's GenerationParams, with the engine's own range rules. Errors name the field as
// the client wrote it (max_tokens, not maxNewTokens).

export type ParamNames = Partial<Record<keyof GenerationParams | 'prompt', string>>;

export const OPENAI_NAMES: ParamNames = {
  maxNewTokens: 'max_tokens', doSample: 'do_sample', temperature: 'temperature', topK: 'top_k', topP: 'top_p',
  repetitionPenalty: 'repetition_penalty', stop: 'stop', numReturnSequences: 'n', returnFullText: 'echo',
  ignoreEos: 'ignore_eos', truncate: 'truncate', seed: 'seed', prompt: 'prompt',
};

export const NATIVE_NAMES: ParamNames = {
  maxNewTokens: 'max_new_tokens', doSample: 'do_sample', temperature: 'temperature', topK: 'top_k', topP: 'top_p',
  repetitionPenalty: 'repetition_penalty', stop: 'stop', numReturnSequences: 'num_return_sequences',
  returnFullText: 'return_full_text', ignoreEos: 'ignore_eos', truncate: 'truncate', seed: 'seed', prompt: 'prompt',
};

/** A request parameter that is wrong: `field` as the client named it. */
export class RequestParamError extends Error {
  constructor(readonly field: string, readonly reason: string) {
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

function refuseUnsupported(body: CompletionRequest | ChatRequest): void {
  if (body.logprobs) throw new RequestParamError('logprobs', 'is not supported by falconq');
  if (body.best_of !== undefined && body.best_of !== null && body.best_of !== 1) throw new RequestParamError('best_of', 'is not supported (use n)');
  if (body.presence_penalty) throw new RequestParamError('presence_penalty', 'is not supported (use repetition_penalty)');
  if (body.frequency_penalty) throw new RequestParamError('frequency_penalty', 'is not supported (use repetition_penalty)');
  if (body.logit_bias && Object.keys(body.logit_bias).length > 0) throw new RequestParamError('logit_bias', 'is not supported');
  if ('suffix' in body && body.suffix) throw new RequestParamError('suffix', 'is not supported');
}

/**
 * OpenAI semantics: temperature defaults to 1 and samples; temperature 0 means greedy. `do_sample` overrides.
 */
export function paramsFromOpenAi(body: CompletionRequest | ChatRequest, contextLength: number): GenerationParams {
  refuseUnsupported(body);
  const temperature = body.temperature ?? 1;
  if (temperature < 0 || temperature > 2) throw new RequestParamError('temperature', `must be between 0 and 2, got ${temperature}`);
  const doSample = body.do_sample ?? temperature > 0;
  const stop = body.stop === undefined || body.stop === null ? undefined : typeof body.stop === 'string' ? [body.stop] : body.stop;
  const partial: Partial<GenerationParams> = defined({
    maxNewTokens: body.max_tokens ?? body.max_completion_tokens ?? undefined,
    doSample,
    temperature: temperature > 0 ? temperature : undefined,
    topK: body.top_k ?? undefined,
    topP: body.top_p ?? undefined,
    repetitionPenalty: body.repetition_penalty ?? undefined,
    stop,
    numReturnSequences: body.n ?? undefined,
    returnFullText: 'echo' in body && typeof body.echo === 'boolean' ? body.echo : undefined,
    ignoreEos: body.ignore_eos ?? undefined,
    truncate: body.truncate ?? undefined,
    seed: body.seed ?? undefined,
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
