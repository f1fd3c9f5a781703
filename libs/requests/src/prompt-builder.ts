import { InvalidGenerationParamError, fitPromptToContext, type ChatMessage, type GenerationParams } from '@app/engine';
import type { BatchEndpoint } from '@app/store';
import { RequestParamError, isEchoOnly, paramsFromOpenAi } from './generation-params';
import { LONE_SURROGATE_REASON, chatRequestSchema, completionRequestSchema, describeZodIssue, loneSurrogateAt, type ChatRequest, type CompletionRequest } from './request-schemas';

// One OpenAI-shaped request body (a batch line's body, or an online request) -> the rendered prompts and params a
// worker runs, after every check that can be made without the model's weights.

/** What preparing a request needs of the model: its names, tokenizer, chat template and context length. */
/** The served id first, then the aliases a user of the README or of Hugging Face would write. */
export function servedNames(id: string, checkpointId?: string): string[] {
  const names = [id];
  if (checkpointId) names.push(checkpointId, checkpointId.split('/').pop()!);
  names.push('falcon');
  return [...new Set(names)];
}

export interface PromptModel {
  /** Every name a request's `model` may use. */
  names: readonly string[];
  contextLength: number;
  vocabSize: number;
  /** The prompt's token count (may be cheaper than encode). */
  countTokens(text: string): number;
  encode(text: string): number[];
  decode(ids: readonly number[]): string;
  renderChat(messages: ChatMessage[]): string;
}

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
export function checkIdsFit(model: PromptModel, ids: number[], params: GenerationParams, promptField: string, maxTokensField: string): number {
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

/**
 * The most UTF-8 bytes a prompt may hold: 64 per context token (128 KiB for 2,048 tokens). Falcon's tokens average
 * about 4 bytes of text, so a longer prompt could only run with `truncate`, which keeps its last tokens: the rest would
 * be tokenized for nothing. Checked before tokenizing, which costs about a second per MiB of CPU.
 */
export const PROMPT_BYTES_PER_CONTEXT_TOKEN = 64;
export const maxPromptBytes = (contextLength: number): number => contextLength * PROMPT_BYTES_PER_CONTEXT_TOKEN;

export function checkPromptBytes(model: PromptModel, bytes: number, promptField: string, what = 'is'): void {
  const max = maxPromptBytes(model.contextLength);
  if (bytes > max) {
    throw new RequestParamError(promptField, `${what} ${bytes} bytes (UTF-8); a prompt may hold at most ${max} bytes (${PROMPT_BYTES_PER_CONTEXT_TOKEN} per token of the model's ${model.contextLength}-token context)`);
  }
}

/** Checks the prompt's size in bytes, then its tokens: a prompt too large for any context is never tokenized. */
export function checkPromptFits(model: PromptModel, prompt: string, params: GenerationParams, promptField: string, maxTokensField: string): number {
  checkPromptBytes(model, Buffer.byteLength(prompt, 'utf8'), promptField);
  // Counting is enough when the prompt fits; the ids are needed only to refuse (or truncate) one that does not.
  const count = model.countTokens(prompt);
  if (count > 0 && count <= model.contextLength - params.maxNewTokens) return count;
  return checkIdsFit(model, model.encode(prompt), params, promptField, maxTokensField);
}

/** A request's `model` (required) must name the served model (or one of its aliases), as OpenAI answers 404 otherwise. */
export class UnknownModelError extends Error {
  constructor(readonly requested: string, readonly served: readonly string[]) {
    super(`The model '${requested}' does not exist; this server serves ${served.map((n) => `'${n}'`).join(', ')}`);
  }
}

function checkModel(requested: string, model: PromptModel): void {
  if (!model.names.includes(requested)) throw new UnknownModelError(requested, model.names);
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

function preparePrompt(entry: string | number[], field: string, params: GenerationParams, model: PromptModel): PreparedPrompt {
  if (typeof entry === 'string') return { prompt: entry, promptTokens: checkPromptFits(model, entry, params, field, 'max_tokens') };
  const outOfRange = entry.findIndex((id) => id >= model.vocabSize);
  if (outOfRange >= 0) throw new RequestParamError(`${field}[${outOfRange}]`, `is not a token id of this model (0..${model.vocabSize - 1}), got ${entry[outOfRange]}`);
  return { prompt: model.decode(entry), promptIds: entry, promptTokens: checkIdsFit(model, entry, params, field, 'max_tokens') };
}

export function prepareOpenAiRequest(endpoint: BatchEndpoint, body: unknown, model: PromptModel): PreparedRequest {
  const illFormed = loneSurrogateAt(body);
  if (illFormed !== null) throw new RequestParamError(illFormed, LONE_SURROGATE_REASON);
  if (endpoint === '/v1/chat/completions') {
    const request = parseOrThrow(chatRequestSchema, body);
    checkModel(request.model, model);
    const params = paramsFromOpenAi(request, model.contextLength);
    const messages = toChatMessages(request.messages);
    // Bounded before the chat template renders them (its output is checked again before tokenizing).
    checkPromptBytes(model, messages.reduce((sum, m) => sum + Buffer.byteLength(m.content, 'utf8'), 0), 'messages', 'hold');
    const prompt = model.renderChat(messages);
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
