import { InvalidGenerationParamError, fitPromptToContext, type ChatMessage, type GenerationParams } from '@app/engine';
import type { BatchEndpoint } from '@app/store';
import type { ServedModel } from '../model/served-model';
import { RequestParamError, paramsFromOpenAi } from './generation-params';
import { LONE_SURROGATE_REASON, chatRequestSchema, completionRequestSchema, describeZodIssue, loneSurrogateAt, type ChatRequest } from './request-schemas';

// One OpenAI-shaped request body (a batch line's body, or an online request) -> the rendered prompt and params a
// worker runs, after every check that can be made without the model's weights.

export interface PreparedRequest {
  prompt: string;
  params: GenerationParams;
  promptTokens: number;
  stream: boolean;
}

function toChatMessages(messages: ChatRequest['messages']): ChatMessage[] {
  return messages.map((m) => ({
    role: m.role === 'developer' ? 'system' : m.role,
    content: typeof m.content === 'string' ? m.content : m.content.map((part) => part.text).join(''),
  }));
}

/** Throws RequestParamError naming the field when the prompt with max tokens does not fit the context. */
export function checkPromptFits(model: ServedModel, prompt: string, params: GenerationParams, promptField: string, maxTokensField: string): number {
  const ids = model.encode(prompt);
  try {
    fitPromptToContext(ids, params, model.contextLength);
  } catch (error) {
    if (error instanceof InvalidGenerationParamError) {
      throw new RequestParamError(promptField, error.reason.replace(/maxNewTokens/g, maxTokensField));
      // (truncate keeps its name in both APIs)
    }
    throw error;
  }
  return ids.length;
}

export function prepareOpenAiRequest(endpoint: BatchEndpoint, body: unknown, model: ServedModel): PreparedRequest {
  const illFormed = loneSurrogateAt(body);
  if (illFormed !== null) throw new RequestParamError(illFormed, LONE_SURROGATE_REASON);
  if (endpoint === '/v1/chat/completions') {
    const parsed = chatRequestSchema.safeParse(body);
    if (!parsed.success) {
      const issue = describeZodIssue(parsed.error);
      throw new RequestParamError(issue.field, issue.message);
    }
    const params = paramsFromOpenAi(parsed.data, model.contextLength);
    const prompt = model.renderChat(toChatMessages(parsed.data.messages));
    const promptTokens = checkPromptFits(model, prompt, params, 'messages', 'max_tokens');
    return { prompt, params, promptTokens, stream: parsed.data.stream === true };
  }
  const parsed = completionRequestSchema.safeParse(body);
  if (!parsed.success) {
    const issue = describeZodIssue(parsed.error);
    throw new RequestParamError(issue.field, issue.message);
  }
  const prompt = typeof parsed.data.prompt === 'string' ? parsed.data.prompt : parsed.data.prompt[0];
  const params = paramsFromOpenAi(parsed.data, model.contextLength);
  const promptTokens = checkPromptFits(model, prompt, params, 'prompt', 'max_tokens');
  return { prompt, params, promptTokens, stream: parsed.data.stream === true };
}
