// Progress events of a batch: published by the store (Redis pub/sub), served by the api as SSE.
import type { BatchStatus, ItemStatus } from './lifecycle';

export interface BatchCounts {
  total: number;
  completed: number; // succeeded
  failed: number; // failed, expired or cancelled items
}

export type BatchEvent =
  | { type: 'progress'; batchId: string; counts: BatchCounts; itemsPerSecond: number; tokensPerSecond: number; etaSeconds: number | null; at: number }
  | { type: 'item'; batchId: string; index: number; customId: string; status: ItemStatus; at: number }
  | { type: 'status'; batchId: string; status: BatchStatus; counts: BatchCounts; at: number };
