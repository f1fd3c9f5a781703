import { randomUUID } from 'node:crypto';
import type { JobItemRef } from '@app/contracts';

/** Why a running generation was stopped before its end: its batch must no longer run, or this worker stops. */
export type StopReason = 'batch' | 'shutdown';

export interface InFlightRequest {
  readonly requestId: string;
  /** This run of the prompt: a retry after a crash is a new attempt, whose streamed text starts over. */
  readonly attempt: string;
  readonly data: JobItemRef;
  readonly startedAt: number;
  generatedTokens: number;
  lastProgressAt: number;
  stopReason?: StopReason;
}

/** The prompts this worker is generating right now, so cancellation and shutdown can find them. */
export class InFlightRegistry {
  private readonly requests = new Map<string, InFlightRequest>();

  add(requestId: string, data: JobItemRef): InFlightRequest {
    const now = Date.now();
    const entry: InFlightRequest = { requestId, attempt: randomUUID(), data, startedAt: now, generatedTokens: 0, lastProgressAt: now };
    this.requests.set(requestId, entry);
    return entry;
  }

  remove(entry: InFlightRequest): void {
    if (this.requests.get(entry.requestId) === entry) this.requests.delete(entry.requestId);
  }

  get size(): number {
    return this.requests.size;
  }

  all(): InFlightRequest[] {
    return [...this.requests.values()];
  }

  batchIds(): string[] {
    return [...new Set(this.all().map((entry) => entry.data.batchId))];
  }

  ofBatch(batchId: string): InFlightRequest[] {
    return this.all().filter((entry) => entry.data.batchId === batchId);
  }
}
