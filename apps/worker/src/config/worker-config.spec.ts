import { loadWorkerConfig } from './worker-config';

describe('loadWorkerConfig', () => {
  const base = { MODEL_DIR: '/models/tiny' };

  it('fills defaults', () => {
    const config = loadWorkerConfig(base);
    expect(config).toMatchObject({ redisUrl: 'redis://127.0.0.1:6379', prefix: 'falconq', executionProvider: 'cpu', deviceId: 0, slots: 16, kvPlacement: 'auto', cudaFpaIntbGemm: 'auto', prefillWarmUp: 'auto', dequantizeWeights: false });
    expect(config.workerId).toContain(String(process.pid));
  });

  it('reads every variable', () => {
    const config = loadWorkerConfig({ ...base, REDIS_URL: 'redis://r:6380', FALCONQ_EP: 'webgpu', FALCONQ_DEVICE_ID: '1', FALCONQ_SLOTS: '64', FALCONQ_WORKER_ID: 'gpu1-a', FALCONQ_REDIS_PREFIX: '{fq}', FALCONQ_LOCK_MS: '2000', FALCONQ_KV_PLACEMENT: 'device', FALCONQ_CUDA_FPA_INTB: 'off', FALCONQ_PREFILL_WARM_UP: 'on', FALCONQ_PREFILL_RUN_COST: '0', FALCONQ_DEQUANTIZE_WEIGHTS: '1' });
    expect(config).toMatchObject({ dequantizeWeights: true, prefillRunCostTokens: 0, redisUrl: 'redis://r:6380', executionProvider: 'webgpu', deviceId: 1, slots: 64, workerId: 'gpu1-a', prefix: '{fq}', lockDurationMs: 2000, kvPlacement: 'device', cudaFpaIntbGemm: 'off', prefillWarmUp: 'on' });
  });

  it.each([
    [{ FALCONQ_SLOTS: 'many' }, 'FALCONQ_SLOTS'],
    [{ FALCONQ_SLOTS: '0' }, 'FALCONQ_SLOTS'],
    [{ FALCONQ_EP: 'tpu' }, 'FALCONQ_EP'],
    [{ REDIS_URL: 'localhost:6379' }, 'REDIS_URL'],
    [{ FALCONQ_DEVICE_ID: '-1' }, 'FALCONQ_DEVICE_ID'],
    [{ FALCONQ_KV_PLACEMENT: 'gpu' }, 'FALCONQ_KV_PLACEMENT'],
    [{ FALCONQ_CUDA_FPA_INTB: 'yes' }, 'FALCONQ_CUDA_FPA_INTB'],
    [{ FALCONQ_PREFILL_WARM_UP: '1' }, 'FALCONQ_PREFILL_WARM_UP'],
    [{ FALCONQ_PREFILL_RUN_COST: '-1' }, 'FALCONQ_PREFILL_RUN_COST'],
    [{ FALCONQ_DEQUANTIZE_WEIGHTS: 'yes' }, 'FALCONQ_DEQUANTIZE_WEIGHTS'],
  ])('names the variable of a bad value (%j)', (bad, name) => {
    expect(() => loadWorkerConfig({ ...base, ...bad })).toThrow(name);
  });

  it('reads a Sentinel topology and checks it', () => {
    const config = loadWorkerConfig({ ...base, FALCONQ_REDIS_SENTINELS: 's1:26379,s2:26379', FALCONQ_REDIS_SENTINEL_NAME: 'mymaster' });
    expect(config.redis).toMatchObject({ sentinels: [{ host: 's1', port: 26379 }, { host: 's2', port: 26379 }], sentinelName: 'mymaster' });
    expect(() => loadWorkerConfig({ ...base, FALCONQ_REDIS_SENTINELS: 's1:26379' })).toThrow('FALCONQ_REDIS_SENTINEL_NAME');
    expect(() => loadWorkerConfig({ ...base, FALCONQ_REDIS_SENTINELS: 's1' })).toThrow('FALCONQ_REDIS_SENTINELS');
  });

  it('requires a hash-tag prefix on Redis Cluster', () => {
    expect(() => loadWorkerConfig({ ...base, FALCONQ_REDIS_CLUSTER_NODES: 'n1:7000' })).toThrow('FALCONQ_REDIS_PREFIX');
    expect(loadWorkerConfig({ ...base, FALCONQ_REDIS_CLUSTER_NODES: 'n1:7000', FALCONQ_REDIS_PREFIX: '{fq}' }).redis.clusterNodes).toEqual([{ host: 'n1', port: 7000 }]);
  });

  it('requires MODEL_DIR', () => {
    expect(() => loadWorkerConfig({})).toThrow('MODEL_DIR');
  });
});
