import { hostname } from 'node:os';
import { Logger } from '@nestjs/common';
import type { EngineStats } from '@app/engine';
import type { WorkerHeartbeatInfo } from '@app/store';
import type { WorkerConfig } from './config/worker-config';
import type { WorkerEngine, WorkerStore } from './ports';
import type { InFlightRegistry } from './processing/in-flight';
import { isEngineGone } from './processing/error-kinds';

/** Tells the store every few seconds that this worker lives, what it runs on and how fast it goes. */
export class Heartbeat {
  private readonly logger = new Logger('Heartbeat');
  private timer?: NodeJS.Timeout;
  private last: EngineWindowStart = { at: Date.now(), generatedTokens: 0, decodeSteps: 0, decodeRows: 0, decodeMsTotal: 0, prefillMsTotal: 0 };
  itemsProcessed = 0;

  constructor(
    private readonly config: WorkerConfig,
    private readonly engine: WorkerEngine,
    private readonly store: WorkerStore,
    private readonly inFlight: InFlightRegistry,
    /** Told when the engine is found gone while idle (no request of it failed to tell the processor). */
    private readonly onEngineGone: (error: Error) => void = () => undefined,
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
      const window = engineWindow(this.last, stats, now);
      this.last = { at: now, ...pick(stats, 'generatedTokens', 'decodeSteps', 'decodeRows', 'decodeMsTotal', 'prefillMsTotal') };
      await this.store.workers.recordHeartbeat(this.config.workerId, {
        host: hostname(),
        pid: process.pid,
        executionProvider: this.config.executionProvider,
        deviceId: this.config.deviceId,
        slots: this.config.slots,
        activeSequences: this.inFlight.size,
        waitingRequests: stats.waitingRequests,
        ...window,
        itemsProcessed: this.itemsProcessed,
      });
    } catch (error) {
      if (isEngineGone(error)) return this.onEngineGone(error);
      this.logger.warn(`heartbeat failed (will retry): ${error instanceof Error ? error.message : String(error)}`);
    }
  }
}

type EngineWindowStart = { at: number } & Pick<EngineStats, 'generatedTokens' | 'decodeSteps' | 'decodeRows' | 'decodeMsTotal' | 'prefillMsTotal'>;

const pick = <T, K extends keyof T>(from: T, ...keys: K[]): Pick<T, K> => Object.fromEntries(keys.map((key) => [key, from[key]])) as Pick<T, K>;

const round = (value: number, digits: number) => Math.round(value * 10 ** digits) / 10 ** digits;

/**
 * The engine's throughput and batch occupancy since the last heartbeat: tokens/s, rows per decode step (how full
 * the batch runs: at most the slots), ms per decode step and the share of the time spent in prefill runs (joins).
 * The per-step figures are absent when no decode step ran in the window.
 */
export function engineWindow(last: EngineWindowStart, stats: EngineStats, now: number): Pick<WorkerHeartbeatInfo, 'tokensPerSecond' | 'rowsPerDecodeStep' | 'decodeMsPerStep' | 'prefillShare'> {
  const ms = Math.max(now - last.at, 1);
  const tokens = Math.max(0, stats.generatedTokens - last.generatedTokens);
  const steps = stats.decodeSteps - last.decodeSteps;
  const prefillMs = Math.max(0, stats.prefillMsTotal - last.prefillMsTotal);
  return {
    tokensPerSecond: round((tokens * 1000) / ms, 1),
    ...(steps > 0 ? { rowsPerDecodeStep: round((stats.decodeRows - last.decodeRows) / steps, 1), decodeMsPerStep: round((stats.decodeMsTotal - last.decodeMsTotal) / steps, 1) } : {}),
    prefillShare: round(Math.min(1, prefillMs / ms), 3),
  };
}
