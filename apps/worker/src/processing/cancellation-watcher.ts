import { Logger } from '@nestjs/common';
import type { WorkerEngine, WorkerStore } from '../ports';
import type { InFlightRegistry } from './in-flight';
import { runDecisionOf } from '@app/contracts';

/**
 * Polls the state of the batches this worker is generating for and stops the generations of a batch that must no
 * longer run (cancelled, expired, failed): the engine frees their slots at its next step and the processor reports
 * them stopped. One small read per in-flight batch per interval, whatever the number of prompts.
 */
export class CancellationWatcher {
  private readonly logger = new Logger('CancellationWatcher');
  private timer?: NodeJS.Timeout;
  private checking = false;

  constructor(
    private readonly engine: WorkerEngine,
    private readonly store: WorkerStore,
    private readonly inFlight: InFlightRegistry,
    private readonly intervalMs: number,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.check(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  async check(): Promise<void> {
    if (this.checking) return;
    this.checking = true;
    try {
      for (const batchId of this.inFlight.batchIds()) {
        const batch = await this.store.batches.get(batchId);
        // Whatever ended it (cancelled, expired, failed, gone past its retention), a batch that must not run stops.
        if (batch && runDecisionOf(batch) !== 'stop') continue;
        for (const entry of this.inFlight.ofBatch(batchId)) {
          if (entry.stopReason) continue;
          entry.stopReason = 'batch';
          await this.engine.cancel(entry.requestId);
        }
      }
    } catch (error) {
      this.logger.warn(`cancellation check failed (will retry): ${error instanceof Error ? error.message : String(error)}`);
    } finally {
      this.checking = false;
    }
  }
}
