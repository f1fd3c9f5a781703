// One finished prompt, as the worker reports it and the api serves it.
import type { ItemErrorCode, ItemStatus } from './lifecycle';

export type ItemFinishReason = 'eos' | 'stop' | 'length' | 'cancelled';

/** A generated token's log-probability and the most likely alternatives (when the request asked for logprobs). */
export interface ItemTokenLogprob {
  token: number;
  text: string;
  logprob: number;
  top: { token: number; text: string; logprob: number }[];
}

/** A prompt token's log-probability given the prompt before it (echo with logprobs); null for the first token. */
export interface ItemPromptTokenLogprob {
  token: number;
  text: string;
  logprob: number | null;
  top: { token: number; text: string; logprob: number }[] | null;
}

export interface ItemSequence {
  text: string;
  finishReason: ItemFinishReason;
  tokens: number;
  logprobs?: ItemTokenLogprob[];
  /** With echo and logprobs (completions): one entry per prompt token, before `logprobs`. */
  promptLogprobs?: ItemPromptTokenLogprob[];
}

export interface ItemOutput {
  sequences: ItemSequence[];
  promptTokens: number;
  completionTokens: number;
  timeToFirstTokenMs: number;
  generationMs: number;
}

export interface ItemError {
  code: ItemErrorCode;
  message: string;
}

export interface ItemResult {
  batchId: string;
  index: number;
  customId: string;
  status: ItemStatus;
  output?: ItemOutput; // when succeeded
  error?: ItemError; // otherwise
  attempts: number;
  workerId?: string;
  finishedAt: number; // epoch ms
}

interface ItemReportBase {
  batchId: string;
  index: number;
  customId: string;
  attempts: number;
  workerId?: string;
  finishedAt: number; // epoch ms
}

/**
 * What a worker (or the api, for items it took back) reports about one item: it succeeded, it failed with a code, or
 * it was stopped because its batch must no longer run. The store decides what a stop means (cancelled, expired, or
 * failed with its batch) and what becomes of the batch; no reporter decides a batch's fate.
 */
export type ItemReport =
  | (ItemReportBase & { outcome: 'succeeded'; output: ItemOutput })
  | (ItemReportBase & { outcome: 'failed'; error: ItemError })
  | (ItemReportBase & { outcome: 'stopped' });

/** What recording a result did: exactly one result per item; a later duplicate is ignored. */
export type RecordOutcome = 'recorded' | 'duplicate';
