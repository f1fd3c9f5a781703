import { Inject, Injectable, Logger, type BeforeApplicationShutdown, type OnApplicationBootstrap } from '@nestjs/common';
import type { Worker } from 'bullmq';
import type { StoredJobData } from '@app/contracts';
import { createGenerateConsumer, type GenerateJob } from '@app/queue';
import { WORKER_CONFIG, type WorkerConfig } from './config/worker-config';
import { Heartbeat } from './heartbeat';
import { WORKER_ENGINE, WORKER_STORE, type WorkerEngine, type WorkerStore } from './ports';
import { CancellationWatcher } from './processing/cancellation-watcher';
import { GenerateJobProcessor } from './processing/generate-processor';
import { InFlightRegistry } from './processing/in-flight';

/** Printed once the worker takes jobs; process supervisors and tests wait for it. */
export const WORKER_READY_LINE = 'falconq worker ready';

/** Exit status of a worker whose engine is gone: the fleet (or any process supervisor) starts a fresh one. */
export const ENGINE_GONE_EXIT_CODE = 70;

/**
 * The worker's lifecycle in one place, so the order is explicit: start the consumer once the engine is up; on
 * shutdown stop taking jobs, let in-flight prompts finish for a grace period, hand the rest back to the queue, and
 * only then close the engine and the store. The engine is supervised: once it is gone (its thread died), the worker
 * stops taking jobs, hands the ones it holds back without spending their attempts, and exits non-zero.
 */
@Injectable()
export class WorkerRuntime implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger('Worker');
  private readonly inFlight = new InFlightRegistry();
  private consumer?: Worker<StoredJobData>;
  private processor!: GenerateJobProcessor;
  private watcher!: CancellationWatcher;
  private heartbeat!: Heartbeat;
  private engineGone?: Promise<void>;
  /** How the process ends once the engine is gone; main.ts may replace it (tests observe it). */
  exit: (code: number) => void = (code) => process.exit(code);

  constructor(
    @Inject(WORKER_CONFIG) private readonly config: WorkerConfig,
    @Inject(WORKER_ENGINE) private readonly engine: WorkerEngine,
    @Inject(WORKER_STORE) private readonly store: WorkerStore,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    const c = this.config;
    this.processor = new GenerateJobProcessor(this.engine, this.store, this.inFlight, {
      workerId: c.workerId, progressMs: c.progressMs, onEngineGone: (error) => void this.onEngineGone(error),
    });
    this.watcher = new CancellationWatcher(this.engine, this.store, this.inFlight, c.cancelPollMs);
    this.heartbeat = new Heartbeat(c, this.engine, this.store, this.inFlight, (error) => void this.onEngineGone(error));
    this.consumer = createGenerateConsumer(
      {
        redisUrl: c.redisUrl,
        redis: c.redis,
        prefix: c.prefix,
        concurrency: c.slots,
        lockDurationMs: c.lockDurationMs,
        stalledIntervalMs: c.stalledIntervalMs,
        maxStalledCount: c.maxStalledCount,
        name: c.workerId,
      },
      (job, token) => this.processor.process(job, token),
    );
    this.consumer.on('completed', () => (this.heartbeat.itemsProcessed += 1));
    this.consumer.on('failed', (job, error) => void this.onFailed(job, error));
    this.consumer.on('stalled', (jobId) => this.logger.warn(`job ${jobId} stalled (its worker stopped renewing the lock): back in the queue`));
    this.consumer.on('error', (error) => this.logger.error(`queue error: ${error.message}`));
    void this.consumer.run().catch((error: Error) => this.logger.error(`consumer stopped: ${error.message}`));
    await this.consumer.waitUntilReady();
    this.watcher.start();
    this.heartbeat.start();
    this.logger.log(
      `${WORKER_READY_LINE}: id=${c.workerId} ep=${c.executionProvider} device=${c.deviceId} slots=${c.slots} queue=${c.prefix}`,
    );
  }

  /**
   * The engine closed without being asked (its thread died): nothing this worker takes can run. Stop consuming, let
   * the held jobs hand themselves back (each one's engine request failed), close, and exit for a fresh process.
   */
  onEngineGone(error: Error): Promise<void> {
    this.engineGone ??= (async () => {
      this.logger.error(`engine gone (${error.message}): no new jobs; handing ${this.inFlight.size} back; exiting with ${ENGINE_GONE_EXIT_CODE}`);
      this.watcher.stop();
      this.heartbeat.stop();
      await this.consumer?.close().catch((closeError: Error) => this.logger.error(`closing the consumer: ${closeError.message}`));
      this.consumer = undefined;
      await this.store.close().catch(() => undefined);
      this.exit(ENGINE_GONE_EXIT_CODE);
    })();
    return this.engineGone;
  }

  async beforeApplicationShutdown(signal?: string): Promise<void> {
    if (!this.consumer) return;
    this.logger.log(`stopping (${signal ?? 'shutdown'}): no new jobs; ${this.inFlight.size} in flight`);
    this.watcher.stop();
    const closed = this.consumer.close();
    const finishedInTime = await Promise.race([
      closed.then(() => true),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(false), this.config.shutdownGraceMs).unref()),
    ]);
    if (!finishedInTime) {
      this.logger.warn(`grace period over: handing ${this.inFlight.size} prompts back to the queue`);
      for (const entry of this.inFlight.all()) {
        entry.stopReason = 'shutdown';
        await this.engine.cancel(entry.requestId);
      }
      await closed;
    }
    this.heartbeat.stop();
    await this.engine.close();
    await this.store.close();
    this.logger.log('stopped');
  }

  private async onFailed(job: GenerateJob | undefined, error: Error): Promise<void> {
    if (!job) return;
    try {
      await this.processor.reportGivenUp(job, error);
    } catch (recordError) {
      this.logger.error(`could not record the failure of ${job.id}: ${(recordError as Error).message}`);
    }
  }
}
