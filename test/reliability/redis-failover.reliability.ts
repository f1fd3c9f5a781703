// A paused master (DEBUG SLEEP: a stall or a partition) on a Redis Cluster and on a Sentinel group: a replica takes
// over while it sleeps, and it comes back as a replica that refuses writes. Every prompt must still end with exactly
// one result. (The SIGKILL variant runs in CI: test/e2e/redis-failover.e2e-spec.ts.)
import { failoverCluster, failoverSentinel, runMasterFailover } from '../support/redis-failover';

it('Redis Cluster: master paused mid-batch, every prompt completes exactly once, workers and api carry on', async () => {
  await runMasterFailover(failoverCluster, 'DEBUG SLEEP');
});

it('Redis Sentinel: master paused mid-batch, every prompt completes exactly once, workers and api carry on', async () => {
  await runMasterFailover(failoverSentinel, 'DEBUG SLEEP');
});
