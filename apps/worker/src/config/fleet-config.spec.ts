import { fleetAssignments, loadFleetConfig, workerEnvironment } from './fleet-config';

describe('fleet configuration', () => {
  it('flags win over the environment', () => {
    const config = loadFleetConfig({ gpus: '0,1', perGpu: '2', ep: 'cuda' }, { FALCONQ_GPUS: '3', FALCONQ_EP: 'cpu', FALCONQ_SLOTS: '32' }, 'host');
    expect(config).toMatchObject({ devices: [0, 1], perDevice: 2, executionProvider: 'cuda', slots: 32, workerIdBase: 'host' });
  });

  it('one process per device and ordinal, named after both', () => {
    const config = loadFleetConfig({ gpus: '0,1', perGpu: '2' }, {}, 'box');
    expect(fleetAssignments(config).map((a) => a.workerId)).toEqual(['box-gpu0-0', 'box-gpu0-1', 'box-gpu1-0', 'box-gpu1-1']);
  });

  it('cuda: each process sees only its GPU, as device 0', () => {
    const config = loadFleetConfig({ gpus: '2,3', ep: 'cuda', slots: '64', model: '/m', redis: 'redis://r:6379' }, {}, 'box');
    const env = workerEnvironment(config, fleetAssignments(config)[1], { PATH: '/bin', CUDA_VISIBLE_DEVICES: '0,1,2,3' });
    expect(env).toMatchObject({ PATH: '/bin', CUDA_VISIBLE_DEVICES: '3', FALCONQ_DEVICE_ID: '0', FALCONQ_EP: 'cuda', FALCONQ_SLOTS: '64', MODEL_DIR: '/m', REDIS_URL: 'redis://r:6379', FALCONQ_WORKER_ID: 'box-gpu3-0' });
  });

  it('cpu and webgpu: the device id travels in FALCONQ_DEVICE_ID', () => {
    const config = loadFleetConfig({ gpus: '1', ep: 'webgpu' }, {}, 'box');
    expect(workerEnvironment(config, fleetAssignments(config)[0], {})).toMatchObject({ FALCONQ_DEVICE_ID: '1', FALCONQ_EP: 'webgpu' });
  });

  it.each([
    [{ gpus: '0,x' }, '--gpus / FALCONQ_GPUS'],
    [{ perGpu: '0' }, '--per-gpu / FALCONQ_PER_GPU'],
    [{ ep: 'tpu' }, '--ep / FALCONQ_EP'],
    [{ redis: 'localhost' }, '--redis / REDIS_URL'],
  ])('names the flag of a bad value (%j)', (flags, name) => {
    expect(() => loadFleetConfig(flags, {}, 'box')).toThrow(name);
  });
});
