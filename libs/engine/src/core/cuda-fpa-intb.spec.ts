import { usesCudaFpaIntbGemm } from './engine-core';

describe('usesCudaFpaIntbGemm', () => {
  it.each([
    ['cuda', 'auto', 16, false],
    ['cuda', 'auto', 17, true],
    ['cuda', undefined, 256, true],
    ['cuda', 'on', 1, true],
    ['cuda', 'off', 256, false],
    ['webgpu', 'on', 256, false],
    ['cpu', 'auto', 256, false],
  ] as const)('%s, %s, %i slots -> %s', (executionProvider, cudaFpaIntbGemm, slots, expected) => {
    expect(usesCudaFpaIntbGemm({ executionProvider, cudaFpaIntbGemm, slots })).toBe(expected);
  });
});
