// One finished prompt, as the worker records it and the api serves it.

export type ItemStatus = 'succeeded' | 'failed' | 'expired' | 'cancelled';
export type ItemFinishReason = 'eos' | 'stop' | 'length' | 'cancelled';

/** A generated token's log-probability and the most likely alternatives (when the request asked for logprobs). */
export interface ItemTokenLogprob {
  token: number;
  text: string;
  logprob: number;
  top: { token: number; text: string; logprob: number }[];
}

export interface ItemSequence {
  text: string;
  finishReason: ItemFinishReason;
  tokens: number;
  logprobs?: ItemTokenLogprob[];
}

export interface ItemOutput {
  sequences: ItemSequence[];
  promptTokens: number;
  completionTokens: number;
  timeToFirstTokenMs: number;
  generationMs: number;
}

export interface ItemError {
  code: string; // e.g. 'invalid_prompt', 'worker_failed', 'expired', 'cancelled'
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

/** What recording a result did: exactly one result per item; a later duplicate is ignored. */
export type RecordOutcome = 'recorded' | 'duplicate';
