import type { BatchEvent } from '@app/contracts';
import { finishedAtOf, type BatchRecord } from '@app/store';

/**
 * The current state of a batch as a progress event (what a late subscriber sees first). The rates of a finished
 * batch are over its run (start to final status), so they stay what they were when it finished.
 */
export function snapshotEvent(batch: BatchRecord, now = Date.now()): BatchEvent {
  const counts = batch.requestCounts;
  const done = counts.completed + counts.failed;
  const end = finishedAtOf(batch) ?? now;
  const elapsed = Math.max(end - (batch.inProgressAt ?? end), 1) / 1000;
  const itemsPerSecond = batch.inProgressAt ? done / elapsed : 0;
  return {
    type: 'progress', batchId: batch.id, counts, itemsPerSecond,
    tokensPerSecond: batch.inProgressAt ? batch.completionTokens / elapsed : 0,
    etaSeconds: itemsPerSecond > 0 ? (counts.total - done) / itemsPerSecond : null, at: now,
  };
}
