// A batch through the api and two workers on a Redis Cluster (3 masters, 3 replicas) and on a Sentinel group
// (1 master, 2 replicas, 3 sentinels); the master holding falconq's keys is SIGKILLed mid-batch and a replica takes
// over. Every prompt must end with exactly one result; the figures say how long the workers and the api took to go on.
// The same with a paused master (DEBUG SLEEP) is in the reliability suite.
import { failoverCluster, failoverSentinel, runMasterFailover } from '../support/redis-failover';

const MINUTES = 60_000;

it('Redis Cluster: master SIGKILLed mid-batch, every prompt completes exactly once, workers and api carry on', async () => {
  await runMasterFailover(failoverCluster, 'SIGKILL');
}, 4 * MINUTES);

it('Redis Sentinel: master SIGKILLed mid-batch, every prompt completes exactly once, workers and api carry on', async () => {
  await runMasterFailover(failoverSentinel, 'SIGKILL');
}, 4 * MINUTES);
