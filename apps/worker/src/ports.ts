import type { BatchEvents, BatchLedger, ItemResults, WorkerRegistry } from '@app/store';
import type { EngineStats, GenerationRequest, GenerationResult, TokenEvent } from '@app/engine';

// What the worker needs from its two collaborators, narrowed to the calls it makes (tests substitute neither: they
// run the real engine and the real Redis store; the narrow ports keep the dependencies visible).

export interface WorkerEngine {
  submit(request: GenerationRequest, onToken?: (event: TokenEvent) => void): Promise<GenerationResult>;
  cancel(requestId: string): void | Promise<void>;
  stats(): EngineStats | Promise<EngineStats>;
  close(): Promise<void>;
}

/** The parts of the store a worker uses: it reads batches and their items, reports item outcomes, streams deltas, beats. */
export interface WorkerStore {
  batches: Pick<BatchLedger, 'get' | 'storedItems' | 'batchParams' | 'batchTemplate'>;
  results: Pick<ItemResults, 'record' | 'get'>;
  events: Pick<BatchEvents, 'publishStream'>;
  workers: Pick<WorkerRegistry, 'recordHeartbeat'>;
  close(): Promise<void>;
}

export const WORKER_ENGINE = Symbol('WORKER_ENGINE');
export const WORKER_STORE = Symbol('WORKER_STORE');
