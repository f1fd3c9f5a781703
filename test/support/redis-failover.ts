// The Redis failover scenario shared by the e2e tests (SIGKILL, in CI) and the reliability suite (a paused master):
// a batch through the api and two workers on a Redis Cluster (3 masters, 3 replicas) or a Sentinel group (1 master,
// 2 replicas, 3 sentinels) while the master holding falconq's keys fails and a replica takes over.
import { Redis } from 'ioredis';
import type { RedisConnectionConfig } from '@app/redis';
import { startApi, type ApiProcess } from './api-process';
import { reportFigures } from './figures';
import { QueueHarness, promptsOf, sleep } from './queue-harness';
import type { RedisServerProcess } from './redis';
import { startTestRedisCluster } from './redis-cluster';
import { startTestRedisSentinel } from './redis-sentinel';
import { tinyModelDir } from './tiny-model';
import { startWorker, type WorkerProcess } from './worker-process';

/** Short locks so a prompt whose lock was lost in the failover comes back within seconds (production: 30 s). */
const FAST_RECOVERY = { FALCONQ_LOCK_MS: '2000', FALCONQ_STALLED_INTERVAL_MS: '1000' };
const PROMPTS = 300;
/**
 * How long the master may be unreachable before it is replaced (cluster-node-timeout, Sentinel's down-after): short
 * to keep the tests short; FALCONQ_FAILOVER_DETECT_MS=15000 runs them with Redis Cluster's default. The cluster's 3 s
 * make its failover (about 5 s) outlast ioredis' default retry budget (under 2 s), which the clients must not rely on.
 */
const detectMs = (topology: 'cluster' | 'sentinel') => Number(process.env.FALCONQ_FAILOVER_DETECT_MS ?? (topology === 'cluster' ? 3000 : 1000));
/** A paused master sleeps through its replacement and comes back as a replica. */
const pauseSecondsFor = (detect: number) => Math.ceil((detect * 3 + 5000) / 1000);
/** Worker log lines of a Redis command that gave up waiting for the new master. */
const GAVE_UP = /Too many Cluster redirections|max retries per request/;

/** What a failover test needs from a topology; the same test runs on both. */
export interface FailoverTopology {
  name: 'cluster' | 'sentinel';
  /** cluster-node-timeout or down-after-milliseconds. */
  detectMs: number;
  url: string;
  prefix: string;
  env: Record<string, string>;
  config: RedisConnectionConfig;
  /** The master holding the queue's keys now. */
  masterOfQueue(): Promise<RedisServerProcess>;
  waitForNewMaster(old: RedisServerProcess): Promise<RedisServerProcess>;
  stop(): Promise<void>;
}

export async function failoverCluster(): Promise<FailoverTopology> {
  const detect = detectMs('cluster');
  const c = await startTestRedisCluster({ nodeTimeoutMs: detect });
  const queueKey = `${c.prefix}:batches`;
  return {
    name: 'cluster', detectMs: detect, url: c.url, prefix: c.prefix, env: c.env, config: { url: c.url, clusterNodes: c.seeds },
    masterOfQueue: () => c.masterFor(queueKey),
    waitForNewMaster: (old) => c.waitForNewMaster(queueKey, old),
    stop: () => c.stop(),
  };
}

export async function failoverSentinel(): Promise<FailoverTopology> {
  const detect = detectMs('sentinel');
  const s = await startTestRedisSentinel({ downAfterMs: detect });
  return {
    name: 'sentinel', detectMs: detect, url: s.url, prefix: s.prefix, env: s.env,
    config: { url: s.url, sentinels: s.sentinels.map((n) => ({ host: n.host, port: n.port })), sentinelName: s.env.FALCONQ_REDIS_SENTINEL_NAME },
    masterOfQueue: () => s.master(),
    waitForNewMaster: (old) => s.waitForNewMaster(old),
    stop: () => s.stop(),
  };
}

/** Polls `probe` every `everyMs` from now until it returns true; resolves with the ms it took. */
async function msUntil(probe: () => Promise<boolean>, timeoutMs: number, everyMs = 50): Promise<number> {
  const started = Date.now();
  for (;;) {
    if (await probe().catch(() => false)) return Date.now() - started;
    if (Date.now() - started > timeoutMs) throw new Error(`not within ${timeoutMs} ms`);
    await sleep(everyMs);
  }
}

export type MasterFault = 'SIGKILL' | 'DEBUG SLEEP';

/**
 * The scenario: 300 prompts through the api and two workers; at 30% the master holding the queue is SIGKILLed or
 * paused (DEBUG SLEEP, long enough for a replica to take over, after which it comes back as a replica). Asserts that
 * every prompt ends with exactly one result and that the workers and the api carry on; reports the figures.
 */
export async function runMasterFailover(start: () => Promise<FailoverTopology>, fault: MasterFault): Promise<void> {
  const topology = await start();
  const modelDir = await tinyModelDir();
  const harness = QueueHarness.open(topology.url, topology.prefix, 3, topology.config);
  const connection = { redisUrl: topology.url, prefix: topology.prefix, modelDir };
  let api: ApiProcess | undefined;
  const workers: WorkerProcess[] = [];
  try {
    api = await startApi({ ...connection, env: topology.env });
    workers.push(...(await Promise.all([0, 1].map(() => startWorker({ ...connection, slots: 8, env: { ...topology.env, ...FAST_RECOVERY } })))));
    const apiUrl = api.url;
    const submitted = await fetch(`${apiUrl}/batches`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompts: promptsOf(PROMPTS), max_new_tokens: 8, ignore_eos: true }),
    });
    expect(submitted.status).toBe(200);
    const accepted = (await submitted.json()) as { id: string; request_counts: { total: number } };
    const batchId = accepted.id;
    await harness.waitForCounts(batchId, Math.round(PROMPTS * 0.3), 120_000);

    const master = await topology.masterOfQueue();
    const before = await harness.store.batches.get(batchId);
    const doneBeforeKill = before!.requestCounts.completed + before!.requestCounts.failed;
    const killedAt = Date.now();
    if (fault === 'SIGKILL') master.kill();
    else await master.pause(pauseSecondsFor(topology.detectMs));

    let apiErrors = 0;
    const batchKey = harness.store.batches.keys.batch(batchId);
    const [{ promoted, promotedMs, doneOnNewMaster, workersMs }, apiMs] = await Promise.all([
      (async () => {
        const promotedNode = await topology.waitForNewMaster(master);
        const promotedAfterMs = Date.now() - killedAt;
        // Read on the promoted master itself (no client of the test's own that could lag): the workers carried on
        // once a result lands there.
        const direct = new Redis({ host: promotedNode.host, port: promotedNode.port, maxRetriesPerRequest: 1 });
        direct.on('error', () => undefined);
        try {
          const doneOn = async () => (await direct.hmget(batchKey, 'completed', 'failed')).reduce((sum, v) => sum + Number(v ?? 0), 0);
          const onArrival = await doneOn();
          const resumedAfterMs = promotedAfterMs + (await msUntil(async () => (await doneOn()) > onArrival, 120_000));
          return { promoted: promotedNode, promotedMs: promotedAfterMs, doneOnNewMaster: onArrival, workersMs: resumedAfterMs };
        } finally {
          direct.disconnect();
        }
      })(),
      // The api carried on once it answers a read of the batch again.
      msUntil(async () => {
        const response = await fetch(`${apiUrl}/batches/${batchId}`);
        if (response.status !== 200) apiErrors += 1;
        return response.status === 200;
      }, 120_000, 100),
    ]);
    const batch = await harness.waitForFinal(batchId, 300_000);
    const finishedAt = Date.now();

    expect(promoted.port).not.toBe(master.port);
    expect(batch.status).toBe('completed');
    expect(batch.requestCounts).toEqual({ total: PROMPTS, completed: PROMPTS, failed: 0 });
    const results = await harness.results(batchId, PROMPTS);
    results.forEach((result, index) => {
      expect(result?.index).toBe(index);
      expect(result?.status).toBe('succeeded');
    });
    expect(await harness.storedResultCount(batchId)).toBe(PROMPTS);
    // The workers' Redis commands waited for the new master instead of failing (a failed result write costs the
    // prompt an attempt). A paused master that wakes up is another matter: see docs/reliability.md.
    if (fault === 'SIGKILL') expect(workerLines(workers, GAVE_UP)).toEqual([]);
    // Both workers went on after the failover (neither was left stuck on the dead master): each wrote a heartbeat to
    // the new master. (Which worker finished the last prompts depends on the machine's speed; this does not.)
    const promotedAt = killedAt + promotedMs;
    const heartbeatsAfterPromotion = async () => {
      const seen = await harness.store.workers.list(120_000);
      return workers.map((worker) => (seen.find((heartbeat) => heartbeat.workerId === worker.workerId)?.seenAt ?? 0) > promotedAt);
    };
    await msUntil(async () => (await heartbeatsAfterPromotion()).every(Boolean), 60_000, 200).catch(() => undefined);
    expect(await heartbeatsAfterPromotion()).toEqual(workers.map(() => true));
    // The api went on too: it serves the finished batch and accepts and completes a new one.
    const viaApi = (await (await fetch(`${apiUrl}/batches/${batchId}`)).json()) as { status: string; request_counts: unknown };
    expect(viaApi).toMatchObject({ status: 'completed', request_counts: { total: PROMPTS, completed: PROMPTS, failed: 0 } });
    const next = await fetch(`${apiUrl}/batches`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompts: ['after the failover'], max_new_tokens: 2 }) });
    expect(next.status).toBe(200);
    expect((await harness.waitForFinal(((await next.json()) as { id: string }).id, 60_000)).status).toBe('completed');
    // Jobs whose lock lapsed during the failover stay 'active' until the stalled-job check hands them back and a
    // worker finishes them again (their second result is refused above): the queue drains, with nothing failed.
    const drained = async () => {
      const counts = await harness.queue.counts();
      return counts.waiting + counts.active + counts.delayed === 0;
    };
    await msUntil(drained, 120_000, 500).catch(() => undefined);
    expect(await harness.queue.counts()).toMatchObject({ waiting: 0, active: 0, delayed: 0, failed: 0 });

    reportFigures(`redis-${topology.name}-${fault === 'SIGKILL' ? 'kill' : 'pause'}-failover`, {
      fault: fault === 'SIGKILL' ? 'master SIGKILLed' : `master paused ${pauseSecondsFor(topology.detectMs)} s (DEBUG SLEEP)`,
      topology: topology.name === 'cluster' ? `3 masters + 3 replicas, cluster-node-timeout ${topology.detectMs} ms` : `1 master + 2 replicas, 3 sentinels (quorum 2), down-after ${topology.detectMs} ms`,
      accepted: accepted.request_counts.total,
      completed: batch.requestCounts.completed,
      failed: batch.requestCounts.failed,
      resultsStored: await harness.storedResultCount(batchId),
      duplicateResultsIgnored: duplicatesLogged(workers),
      retriedPrompts: results.filter((r) => (r?.attempts ?? 0) > 1).length,
      doneBeforeKill,
      // Results acknowledged by the old master but not yet copied to the replica are lost with it (their prompts run again).
      doneOnNewMasterWhenPromoted: doneOnNewMaster,
      replicaPromotedSeconds: promotedMs / 1000,
      workersWentOnSeconds: workersMs / 1000,
      apiWentOnSeconds: apiMs / 1000,
      apiErrorsDuringFailover: apiErrors,
      batchDoneAfterKillSeconds: (finishedAt - killedAt) / 1000,
      lockMs: Number(FAST_RECOVERY.FALCONQ_LOCK_MS),
      workerWarnings: warningsOf(workers),
    });
  } finally {
    await Promise.all(workers.map((w) => w.kill()));
    await api?.stop();
    await harness.close();
    await topology.stop();
  }
}

/** Second results the store refused, as logged by the workers (a prompt generated twice after the failover). */
function duplicatesLogged(processes: WorkerProcess[]): number {
  return processes.reduce((sum, p) => sum + (p.output().match(/duplicate result ignored:/g)?.length ?? 0), 0);
}

/** The distinct warning/error lines of the workers, without ids, for the record. */
function warningsOf(processes: WorkerProcess[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const p of processes) {
    for (const line of p.output().split('\n')) {
      if (!/WARN|ERROR/.test(line)) continue;
      const kind = line.replace(/\u001b\[[0-9;]*m/g, '').replace(/.*?(WARN|ERROR)\s+/, '$1 ').replace(/batch_[0-9a-f]+(-\d+)?( #\d+)?/g, '<item>').replace(/\d+/g, 'N').slice(0, 160);
      counts[kind] = (counts[kind] ?? 0) + 1;
    }
  }
  return counts;
}

function workerLines(processes: WorkerProcess[], pattern: RegExp): string[] {
  return processes.flatMap((p) => p.output().split('\n').filter((line) => pattern.test(line)));
}
