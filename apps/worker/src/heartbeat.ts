import { hostname } from 'node:os';
import { Logger } from '@nestjs/common';
import type { WorkerConfig } from './config/worker-config';
import type { WorkerEngine, WorkerStore } from './ports';
import type { InFlightRegistry } from './processing/in-flight';

/** Tells the store every few seconds that this worker lives, what it runs on and how fast it goes. */
export class Heartbeat {
  private readonly logger = new Logger('Heartbeat');
  private timer?: NodeJS.Timeout;
  private last = { at: Date.now(), generatedTokens: 0 };
  itemsProcessed = 0;

  constructor(
    private readonly config: WorkerConfig,
    private readonly engine: WorkerEngine,
    private readonly store: WorkerStore,
    private readonly inFlight: InFlightRegistry,
  ) {}

  start(): void {
    void this.beat();
    this.timer = setInterval(() => void this.beat(), this.config.heartbeatMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  async beat(): Promise<void> {
    try {
      const stats = await this.engine.stats();
      const now = Date.now();
      const seconds = Math.max((now - this.last.at) / 1000, 1e-3);
      const tokensPerSecond = Math.max(0, stats.generatedTokens - this.last.generatedTokens) / seconds;
      this.last = { at: now, generatedTokens: stats.generatedTokens };
      await this.store.recordWorkerHeartbeat(this.config.workerId, {
        host: hostname(),
        pid: process.pid,
        executionProvider: this.config.executionProvider,
        deviceId: this.config.deviceId,
        slots: this.config.slots,
        activeSequences: this.inFlight.size,
        waitingRequests: stats.waitingRequests,
        tokensPerSecond: Math.round(tokensPerSecond * 10) / 10,
        itemsProcessed: this.itemsProcessed,
      });
    } catch (error) {
      this.logger.warn(`heartbeat failed (will retry): ${error instanceof Error ? error.message : String(error)}`);
    }
  }
}
