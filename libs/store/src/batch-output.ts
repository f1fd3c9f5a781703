// OpenAI batch output/error file lines, built from stored results.
import { isFinalStatus, missingItemError, type ItemPromptTokenLogprob, type ItemResult, type ItemSequence, type ItemTokenLogprob } from '@app/contracts';
import type { BatchEndpoint, BatchRecord } from './types';

export function finishReasonOf(sequence: ItemSequence): 'stop' | 'length' {
  return sequence.finishReason === 'length' ? 'length' : 'stop';
}

const utf8Bytes = (text: string): number[] => Array.from(Buffer.from(text, 'utf8'));

/** Chat's `choices[].logprobs`: one entry per generated token, with its alternatives. */
export function chatLogprobs(entries: ItemTokenLogprob[] | undefined): Record<string, unknown> | null {
  if (!entries) return null;
  return {
    content: entries.map((entry) => ({
      token: entry.text, logprob: entry.logprob, bytes: utf8Bytes(entry.text),
      top_logprobs: entry.top.map((alt) => ({ token: alt.text, logprob: alt.logprob, bytes: utf8Bytes(alt.text) })),
    })),
    refusal: null,
  };
}

/**
 * Completions' `choices[].logprobs` (the legacy shape): parallel lists, and each position's top tokens as a map. With
 * echo, the prompt's tokens come first (`promptEntries`; the first has null token_logprobs and top_logprobs, as
 * OpenAI's), and text_offset counts from the start of the prompt.
 */
export function completionLogprobs(entries: ItemTokenLogprob[] | undefined, promptEntries?: ItemPromptTokenLogprob[]): Record<string, unknown> | null {
  if (!entries) return null;
  const all: ItemPromptTokenLogprob[] = [...(promptEntries ?? []), ...entries];
  const textOffset: number[] = [];
  let offset = 0;
  for (const entry of all) {
    textOffset.push(offset);
    offset += entry.text.length;
  }
  return {
    tokens: all.map((entry) => entry.text),
    token_logprobs: all.map((entry) => entry.logprob),
    // Keyed by text: two tokens may decode to the same text (pieces of a character both show U+FFFD); the likelier stays.
    top_logprobs: all.map((entry) => {
      if (entry.top === null) return null;
      const top: Record<string, number> = {};
      for (const alt of entry.top) if (!(alt.text in top)) top[alt.text] = alt.logprob;
      return top;
    }),
    text_offset: textOffset,
  };
}

/** The response body of one succeeded item, as /v1/completions or /v1/chat/completions would have answered. */
export function completionBody(endpoint: BatchEndpoint, model: string, id: string, result: ItemResult): Record<string, unknown> {
  const output = result.output!;
  const created = Math.floor(result.finishedAt / 1000);
  const usage = {
    prompt_tokens: output.promptTokens,
    completion_tokens: output.completionTokens,
    total_tokens: output.promptTokens + output.completionTokens,
  };
  if (endpoint === '/v1/chat/completions') {
    return {
      id: `chatcmpl-${id}`,
      object: 'chat.completion',
      created,
      model,
      choices: output.sequences.map((s, index) => ({
        index,
        message: { role: 'assistant', content: s.text, refusal: null },
        logprobs: chatLogprobs(s.logprobs),
        finish_reason: finishReasonOf(s),
      })),
      usage,
    };
  }
  return {
    id: `cmpl-${id}`,
    object: 'text_completion',
    created,
    model,
    choices: output.sequences.map((s, index) => ({ text: s.text, index, logprobs: completionLogprobs(s.logprobs, s.promptLogprobs), finish_reason: finishReasonOf(s) })),
    usage,
  };
}

export function requestIdOf(batchId: string, index: number): string {
  return `batch_req_${batchId.replace(/^batch_/, '')}_${index}`;
}

export interface OutputLines {
  output: string[];
  errors: string[];
}

/**
 * One line per request: succeeded ones to the output file, the others to the error file, in input order.
 * `results[i]` is the result of index `offset + i` (null = none yet).
 */
export function batchOutputLines(batch: BatchRecord, results: (ItemResult | null)[], customIds: string[], offset = 0): OutputLines {
  const lines: OutputLines = { output: [], errors: [] };
  results.forEach((result, i) => {
    const index = offset + i;
    const id = requestIdOf(batch.id, index);
    const customId = result?.customId ?? customIds[i];
    if (result?.status === 'succeeded' && result.output) {
      lines.output.push(JSON.stringify({
        id,
        custom_id: customId,
        response: { status_code: 200, request_id: id, body: completionBody(batch.endpoint, batch.model, id, result) },
        error: null,
      }));
      return;
    }
    // While a batch runs, an item without a result is simply not done yet.
    if (!result && !isFinalStatus(batch.status)) return;
    const error = result?.error ?? missingItemError(batch.status);
    lines.errors.push(JSON.stringify({ id, custom_id: customId, response: null, error: { code: error.code, message: error.message } }));
  });
  return lines;
}
