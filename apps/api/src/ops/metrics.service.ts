import { Inject, Injectable } from '@nestjs/common';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { RedisStore } from '@app/store';
import { API_CONFIG, type ApiConfig } from '../config/api-config';
import { STORE } from '../infra/infra.module';
import { JOB_QUEUE, type JobQueue } from '../infra/job-queue';
import { UploadBudget } from '../files/upload-budget';

/**
 * Prometheus metrics. Queue depth, item counters and worker gauges are read from Redis at scrape time, so every api
 * replica reports the same cluster-wide numbers; request latencies are this replica's.
 */
@Injectable()
export class MetricsService {
  readonly registry = new Registry();
  readonly httpDuration: Histogram<'method' | 'route' | 'status'>;
  readonly onlineDuration: Histogram<'endpoint' | 'outcome'>;

  constructor(
    @Inject(API_CONFIG) private readonly config: ApiConfig,
    @Inject(STORE) private readonly store: RedisStore,
    @Inject(JOB_QUEUE) private readonly queue: JobQueue,
    uploads: UploadBudget,
  ) {
    collectDefaultMetrics({ register: this.registry, prefix: 'falconq_api_' });
    const registers = [this.registry];
    this.httpDuration = new Histogram({
      name: 'falconq_http_request_duration_seconds', help: 'HTTP request latency of this api replica',
      labelNames: ['method', 'route', 'status'], buckets: [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers,
    });
    this.onlineDuration = new Histogram({
      name: 'falconq_online_request_duration_seconds', help: 'Latency of online completions (queue wait + generation)',
      labelNames: ['endpoint', 'outcome'], buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120], registers,
    });
    new Gauge({
      name: 'falconq_upload_bytes_in_flight', help: 'Bytes of uploads being received by this api replica, per tenant (as reserved from Content-Length)',
      labelNames: ['tenant'], registers,
      collect() {
        this.reset();
        for (const [tenant, bytes] of uploads.snapshot()) this.set({ tenant }, bytes);
      },
    });
    const jobQueue = this.queue;
    new Gauge({
      name: 'falconq_queue_jobs', help: 'Jobs in the generate queue by state', labelNames: ['state'], registers,
      async collect() {
        const counts = await jobQueue.counts();
        for (const [state, value] of Object.entries(counts)) this.set({ state }, value);
      },
    });
    const resultsStore = this.store;
    const itemTotals = { succeeded: 0, failed: 0, cancelled: 0, expired: 0, tokens: 0 };
    // Counters mirror the store's cluster-wide totals: they only ever move up by the difference seen since last scrape.
    new Counter({
      name: 'falconq_items_total', help: 'Items finished, by outcome (succeeded, failed, cancelled, expired)', labelNames: ['outcome'], registers,
      async collect() {
        const stats = await resultsStore.results.stats();
        const now = { succeeded: stats.itemsSucceeded, failed: stats.itemsFailed, cancelled: stats.itemsCancelled, expired: stats.itemsExpired };
        for (const outcome of ['succeeded', 'failed', 'cancelled', 'expired'] as const) {
          this.inc({ outcome }, Math.max(now[outcome] - itemTotals[outcome], 0));
          itemTotals[outcome] = Math.max(now[outcome], itemTotals[outcome]);
        }
      },
    });
    new Counter({
      name: 'falconq_completion_tokens_total', help: 'Tokens generated for finished items', registers,
      async collect() {
        const stats = await resultsStore.results.stats();
        this.inc(Math.max(stats.completionTokens - itemTotals.tokens, 0));
        itemTotals.tokens = Math.max(stats.completionTokens, itemTotals.tokens);
      },
    });
    const staleMs = this.config.workerStaleMs;
    const workerGauge = (name: string, help: string, pick: (w: Awaited<ReturnType<RedisStore['workers']['list']>>[number]) => number | undefined) =>
      new Gauge({
        name, help, labelNames: ['worker'], registers,
        async collect() {
          this.reset();
          for (const worker of await resultsStore.workers.list(staleMs)) {
            const value = pick(worker);
            if (value !== undefined) this.set({ worker: worker.workerId }, value);
          }
        },
      });
    workerGauge('falconq_worker_tokens_per_second', 'Generation throughput per worker (from its heartbeat)', (w) => w.tokensPerSecond);
    workerGauge('falconq_worker_active_sequences', 'Sequences being decoded per worker', (w) => w.activeSequences);
    workerGauge('falconq_worker_slots', 'Batch slots per worker', (w) => w.slots);
    workerGauge('falconq_worker_waiting_requests', 'Requests waiting in a worker engine', (w) => w.waitingRequests);
    workerGauge('falconq_worker_rows_per_decode_step', 'Rows per decode step: how full the batch runs (from its heartbeat)', (w) => w.rowsPerDecodeStep);
    workerGauge('falconq_worker_decode_ms_per_step', 'Milliseconds per decode step (from its heartbeat)', (w) => w.decodeMsPerStep);
    workerGauge('falconq_worker_prefill_share', 'Share of the time in prefill runs, 0..1 (from its heartbeat)', (w) => w.prefillShare);
    new Gauge({
      name: 'falconq_workers_alive', help: 'Workers with a recent heartbeat', registers,
      async collect() {
        this.set((await resultsStore.workers.list(staleMs)).length);
      },
    });
  }
}
