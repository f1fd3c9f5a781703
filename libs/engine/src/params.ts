// Generation parameters: defaults and validation. Pure (no onnxruntime): the api validates requests with these rules
// before enqueueing, and the engine validates again on submit.

import type { GenerationParams } from './api';
import { InvalidGenerationParamError } from './errors';
import { MAX_TOP_LOGPROBS } from './sampling/logprobs';

export const DEFAULT_GENERATION_PARAMS: Readonly<GenerationParams> = Object.freeze({
  maxNewTokens: 256,
  doSample: false,
  temperature: 1.0,
  topK: 0,
  topP: 1.0,
  repetitionPenalty: 1.0,
  stop: [],
  numReturnSequences: 1,
  returnFullText: false,
  ignoreEos: false,
  truncate: false,
});

export const MAX_STOP_SEQUENCES = 4;
export const MAX_RETURN_SEQUENCES = 16;
/** Falcon's context when the caller does not say (falconq.json shape.contextLength). */
export const DEFAULT_CONTEXT_LENGTH = 2048;

export interface ResolveParamsOptions {
  /** The model's context (prompt + generated tokens); bounds max_new_tokens. */
  contextLength?: number;
}

const KNOWN_FIELDS = new Set<string>([...Object.keys(DEFAULT_GENERATION_PARAMS), 'seed', 'logprobs', 'promptLogprobs']);

/**
 * Fills defaults and checks every field. Throws InvalidGenerationParamError naming the first bad field. The prompt
 * length check needs the tokenizer and happens in checkPromptFits.
 */
export function resolveGenerationParams(
  partial: Partial<GenerationParams> | undefined | null,
  options: ResolveParamsOptions = {},
): GenerationParams {
  const contextLength = options.contextLength ?? DEFAULT_CONTEXT_LENGTH;
  const given = (partial ?? {}) as Record<string, unknown>;
  if (typeof given !== 'object' || Array.isArray(given)) {
    throw new InvalidGenerationParamError('params', 'must be an object');
  }
  for (const key of Object.keys(given)) {
    if (!KNOWN_FIELDS.has(key)) {
      throw new InvalidGenerationParamError(key, `is not a generation parameter (known: ${[...KNOWN_FIELDS].join(', ')})`);
    }
  }
  const pick = <K extends keyof GenerationParams>(key: K): unknown =>
    given[key] === undefined ? DEFAULT_GENERATION_PARAMS[key] : given[key];

  const promptLogprobs = given.promptLogprobs === undefined || given.promptLogprobs === null ? false : bool('promptLogprobs', given.promptLogprobs);
  // Scoring a prompt (its log-probabilities) needs no generated token.
  const maxNewTokens = integerIn('maxNewTokens', pick('maxNewTokens'), promptLogprobs ? 0 : 1, contextLength - 1);
  const doSample = bool('doSample', pick('doSample'));
  const temperature = positiveNumber('temperature', pick('temperature'));
  const topK = integerIn('topK', pick('topK'), 0, Number.MAX_SAFE_INTEGER);
  const topP = numberIn('topP', pick('topP'), 0, 1, { exclusiveMin: true });
  const repetitionPenalty = positiveNumber('repetitionPenalty', pick('repetitionPenalty'));
  const stop = stopStrings(pick('stop'));
  const numReturnSequences = integerIn('numReturnSequences', pick('numReturnSequences'), 1, MAX_RETURN_SEQUENCES);
  const returnFullText = bool('returnFullText', pick('returnFullText'));
  const ignoreEos = bool('ignoreEos', pick('ignoreEos'));
  const truncate = bool('truncate', pick('truncate'));
  const seed = given.seed === undefined || given.seed === null ? undefined : integerIn('seed', given.seed, 0, 2 ** 32 - 1);
  const logprobs = given.logprobs === undefined || given.logprobs === null ? undefined : integerIn('logprobs', given.logprobs, 0, MAX_TOP_LOGPROBS);

  if (promptLogprobs && logprobs === undefined) {
    throw new InvalidGenerationParamError('promptLogprobs', 'needs logprobs (how many alternatives to report per token)');
  }
  if (promptLogprobs && truncate) {
    throw new InvalidGenerationParamError('truncate', 'cannot be combined with promptLogprobs (prompt log-probabilities): the dropped prompt tokens would have none');
  }
  if (numReturnSequences > 1 && !doSample) {
    throw new InvalidGenerationParamError(
      'numReturnSequences',
      `is ${numReturnSequences} but doSample is false: greedy decoding would return ${numReturnSequences} identical ` +
        'copies; set doSample to true (with temperature/top_k/top_p) to get different sequences',
    );
  }
  const params: GenerationParams = {
    maxNewTokens,
    doSample,
    temperature,
    topK,
    topP,
    repetitionPenalty,
    stop,
    numReturnSequences,
    returnFullText,
    ignoreEos,
    truncate,
  };
  if (seed !== undefined) params.seed = seed;
  if (logprobs !== undefined) params.logprobs = logprobs;
  if (promptLogprobs) params.promptLogprobs = true;
  return params;
}

/**
 * Applies the context rule to a tokenized prompt: prompt + maxNewTokens must fit the context. Returns the token ids
 * to prefill (the last ones when params.truncate), or throws naming 'prompt'.
 */
export function fitPromptToContext(promptIds: number[], params: GenerationParams, contextLength: number): number[] {
  if (promptIds.length === 0) {
    throw new InvalidGenerationParamError('prompt', 'is empty: it must encode to at least one token');
  }
  const room = contextLength - params.maxNewTokens;
  if (promptIds.length <= room) return promptIds;
  if (params.truncate) return promptIds.slice(promptIds.length - room);
  throw new InvalidGenerationParamError(
    'prompt',
    `has ${promptIds.length} tokens and maxNewTokens is ${params.maxNewTokens}: together they exceed the model's ` +
      `context of ${contextLength} tokens; shorten the prompt, lower maxNewTokens, or set truncate to keep the ` +
      `prompt's last ${room} tokens`,
  );
}

function integerIn(field: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw new InvalidGenerationParamError(field, `must be an integer, got ${describe(value)}`);
  }
  if (value < min || value > max) {
    throw new InvalidGenerationParamError(field, `must be between ${min} and ${max}, got ${value}`);
  }
  return value;
}

function numberIn(field: string, value: unknown, min: number, max: number, opts: { exclusiveMin?: boolean } = {}): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw new InvalidGenerationParamError(field, `must be a finite number, got ${describe(value)}`);
  }
  const belowMin = opts.exclusiveMin ? value <= min : value < min;
  if (belowMin || value > max) {
    throw new InvalidGenerationParamError(field, `must be in ${opts.exclusiveMin ? '(' : '['}${min}, ${max}], got ${value}`);
  }
  return value;
}

function positiveNumber(field: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new InvalidGenerationParamError(field, `must be a number greater than 0, got ${describe(value)}`);
  }
  return value;
}

function bool(field: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw new InvalidGenerationParamError(field, `must be true or false, got ${describe(value)}`);
  return value;
}

function stopStrings(value: unknown): string[] {
  if (!Array.isArray(value)) throw new InvalidGenerationParamError('stop', `must be an array of strings, got ${describe(value)}`);
  if (value.length > MAX_STOP_SEQUENCES) {
    throw new InvalidGenerationParamError('stop', `has ${value.length} strings; at most ${MAX_STOP_SEQUENCES} are allowed`);
  }
  value.forEach((entry, index) => {
    if (typeof entry !== 'string' || entry.length === 0) {
      throw new InvalidGenerationParamError(`stop[${index}]`, `must be a non-empty string, got ${describe(entry)}`);
    }
  });
  return [...(value as string[])];
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value);
  if (Array.isArray(value)) return 'an array';
  if (value === null) return 'null';
  return typeof value === 'object' ? 'an object' : String(value);
}
