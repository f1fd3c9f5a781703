import { InvalidGenerationParamError, fitPromptToContext, type ChatMessage, type GenerationParams } from '@app/engine';
import type { BatchEndpoint } from '@app/store';
import type { ServedModel } from '../model/served-model';
import { RequestParamError, isEchoOnly, paramsFromOpenAi } from './generation-params';
import { LONE_SURROGATE_REASON, chatRequestSchema, completionRequestSchema, describeZodIssue, loneSurrogateAt, type ChatRequest, type CompletionRequest } from './request-schemas';

// One OpenAI-shaped request body (a batch line's body, or an online request) -> the rendered prompts and params a
// worker runs, after every check that can be made without the model's weights.

export interface PreparedPrompt {
  /** The text a worker runs (for a prompt of token ids: their decoded text, returned by echo). */
  prompt: string;
  /** A prompt sent as token ids: the worker runs exactly these. */
  promptIds?: number[];
  promptTokens: number;
}

export interface PreparedRequest {
  /** One per prompt: /v1/completions takes a list; chat and batch lines hold one. */
  prompts: PreparedPrompt[];
  params: GenerationParams;
  stream: boolean;
  /** stream_options.include_usage: a last chunk with the usage. */
  includeUsage: boolean;
  /** max_tokens 0 with echo: answered with the prompts themselves, nothing generated. */
  echoOnly: boolean;
}

function toChatMessages(messages: ChatRequest['messages']): ChatMessage[] {
  return messages.map((m) => ({
    role: m.role === 'developer' ? 'system' : m.role,
    content: typeof m.content === 'string' ? m.content : m.content.map((part) => part.text).join(''),
  }));
}

/** The error code of a prompt that does not fit the context with its max tokens (OpenAI's code). */
export const CONTEXT_LENGTH_EXCEEDED = 'context_length_exceeded';

/** Throws RequestParamError naming the field when the prompt's tokens with max tokens do not fit the context. */
export function checkIdsFit(model: ServedModel, ids: number[], params: GenerationParams, promptField: string, maxTokensField: string): number {
  try {
    fitPromptToContext(ids, params, model.contextLength);
  } catch (error) {
    if (error instanceof InvalidGenerationParamError) {
      // (truncate keeps its name in both APIs)
      throw new RequestParamError(promptField, error.reason.replace(/maxNewTokens/g, maxTokensField), CONTEXT_LENGTH_EXCEEDED);
    }
    throw error;
  }
  return ids.length;
}

export function checkPromptFits(model: ServedModel, prompt: string, params: GenerationParams, promptField: string, maxTokensField: string): number {
  return checkIdsFit(model, model.encode(prompt), params, promptField, maxTokensField);
}

/** A request's `model`, if given, must name the served model (or one of its aliases), as OpenAI answers 404 otherwise. */
export class UnknownModelError extends Error {
  constructor(readonly requested: string, readonly served: readonly string[]) {
    super(`The model '${requested}' does not exist; this server serves ${served.map((n) => `'${n}'`).join(', ')}`);
  }
}

function checkModel(requested: string | undefined, model: ServedModel): void {
  if (requested !== undefined && !model.names.includes(requested)) throw new UnknownModelError(requested, model.names);
}

function parseOrThrow<T>(schema: { safeParse(body: unknown): { success: true; data: T } | { success: false; error: Parameters<typeof describeZodIssue>[0] } }, body: unknown): T {
  const parsed = schema.safeParse(body);
  if (!parsed.success) {
    const issue = describeZodIssue(parsed.error);
    throw new RequestParamError(issue.field, issue.message);
  }
  return parsed.data;
}

/** The prompt field as a list of prompts, each text or token ids. */
function promptList(prompt: CompletionRequest['prompt']): (string | number[])[] {
  if (typeof prompt === 'string') return [prompt];
  if (prompt.length > 0 && typeof prompt[0] === 'number') return [prompt as number[]];
  return prompt as (string | number[])[];
}

function preparePrompt(entry: string | number[], field: string, params: GenerationParams, model: ServedModel): PreparedPrompt {
  if (typeof entry === 'string') return { prompt: entry, promptTokens: checkPromptFits(model, entry, params, field, 'max_tokens') };
  const outOfRange = entry.findIndex((id) => id >= model.vocabSize);
  if (outOfRange >= 0) throw new RequestParamError(`${field}[${outOfRange}]`, `is not a token id of this model (0..${model.vocabSize - 1}), got ${entry[outOfRange]}`);
  return { prompt: model.decode(entry), promptIds: entry, promptTokens: checkIdsFit(model, entry, params, field, 'max_tokens') };
}

export function prepareOpenAiRequest(endpoint: BatchEndpoint, body: unknown, model: ServedModel): PreparedRequest {
  const illFormed = loneSurrogateAt(body);
  if (illFormed !== null) throw new RequestParamError(illFormed, LONE_SURROGATE_REASON);
  if (endpoint === '/v1/chat/completions') {
    const request = parseOrThrow(chatRequestSchema, body);
    checkModel(request.model, model);
    const params = paramsFromOpenAi(request, model.contextLength);
    const prompt = model.renderChat(toChatMessages(request.messages));
    const promptTokens = checkPromptFits(model, prompt, params, 'messages', 'max_tokens');
    return { prompts: [{ prompt, promptTokens }], params, stream: request.stream === true, includeUsage: request.stream_options?.include_usage === true, echoOnly: false };
  }
  const request = parseOrThrow(completionRequestSchema, body);
  checkModel(request.model, model);
  const params = paramsFromOpenAi(request, model.contextLength);
  const entries = promptList(request.prompt);
  const single = entries.length === 1 && (typeof request.prompt === 'string' || typeof request.prompt[0] === 'number');
  const prompts = entries.map((entry, i) => preparePrompt(entry, single ? 'prompt' : `prompt[${i}]`, params, model));
  return { prompts, params, stream: request.stream === true, includeUsage: request.stream_options?.include_usage === true, echoOnly: isEchoOnly(request) };
}
