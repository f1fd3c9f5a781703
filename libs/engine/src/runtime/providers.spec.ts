import { ExecutionProviderUnavailableError } from '../errors';
import { describeSessionFailure, planExecutionProvider, providerUnavailableReason, type BackendFacts } from './providers';

const facts = (overrides: Partial<BackendFacts> = {}): BackendFacts => ({
  backends: [
    { name: 'cpu', bundled: true },
    { name: 'webgpu', bundled: true },
    { name: 'cuda', bundled: false },
  ],
  cudaProviderInstalled: false,
  platform: 'linux',
  arch: 'x64',
  ...overrides,
});
const cpuModel = { target: 'cpu' as const, executionProviders: ['cpu' as const], activations: 'fp32' as const };
const gpuModel = { target: 'gpu' as const, executionProviders: ['webgpu' as const, 'cuda' as const], activations: 'fp16' as const };

describe('planExecutionProvider', () => {
  it('takes cpu and webgpu when bundled, without warnings for a matching model', () => {
    expect(planExecutionProvider('cpu', cpuModel, facts())).toEqual({ executionProvider: 'cpu', warnings: [] });
    expect(planExecutionProvider('webgpu', gpuModel, facts())).toEqual({ executionProvider: 'webgpu', warnings: [] });
  });

  it('warns when the model was converted for the other target', () => {
    expect(planExecutionProvider('webgpu', cpuModel, facts()).warnings.join()).toMatch(/cpu target.*--target gpu/);
    expect(planExecutionProvider('cpu', gpuModel, facts()).warnings.join()).toMatch(/gpu target/);
    expect(planExecutionProvider('cuda', cpuModel, facts({ cudaProviderInstalled: true })).warnings.join()).toMatch(/fp16\/bf16 variants only/);
  });

  it('refuses cuda when its provider library was not installed, saying how to get it', () => {
    const refuse = () => planExecutionProvider('cuda', gpuModel, facts());
    expect(refuse).toThrow(ExecutionProviderUnavailableError);
    expect(refuse).toThrow(/libonnxruntime_providers_cuda\.so is missing.*falconq setup cuda.*onnxruntime-node 1\.29\.0/s);
    expect(planExecutionProvider('cuda', gpuModel, facts({ cudaProviderInstalled: true }))).toEqual({ executionProvider: 'cuda', warnings: [] });
  });

  it('refuses cuda off linux-x64 and webgpu when the build lacks it', () => {
    expect(providerUnavailableReason('cuda', facts({ platform: 'darwin', arch: 'arm64' }))).toMatch(/linux-x64 only/);
    expect(providerUnavailableReason('webgpu', facts({ backends: [{ name: 'cpu', bundled: true }] }))).toMatch(/does not include it/);
  });

  it('falls back to cpu only when asked, and says so', () => {
    const plan = planExecutionProvider('cuda', gpuModel, facts(), { fallbackToCpu: true });
    expect(plan.executionProvider).toBe('cpu');
    expect(plan.warnings[0]).toMatch(/not installed.*Falling back to the cpu/s);
  });
});

describe('describeSessionFailure', () => {
  it('names the provider, keeps onnxruntime\'s reason and names the cause: a missing library, a version mismatch, no device', () => {
    const library = describeSessionFailure('cuda', '/m/model.onnx', new Error('Failed to load library libonnxruntime_providers_cuda.so with error: libcublas.so.13: cannot open shared object file: No such file or directory'));
    expect(library).toMatch(/\/m\/model\.onnx with the cuda execution provider: .*libcublas\.so\.13.*Cause: the CUDA provider needs libcublas\.so\.13.*falconq setup cuda --check/s);
    expect(describeSessionFailure('cuda', 'm', new Error('onnxruntime version mismatch: 1.29.0 vs 1.30.0'))).toMatch(/Cause: .*built for another onnxruntime version.*falconq setup cuda/s);
    expect(describeSessionFailure('cuda', 'm', new Error('CUDA failure 100: no CUDA-capable device is detected'))).toMatch(/Cause: no usable NVIDIA GPU/);
    expect(describeSessionFailure('cuda', 'm', new Error('something else'))).toMatch(/something else.*falconq setup cuda/s);
    expect(describeSessionFailure('webgpu', 'm', new Error('No supported adapters'))).toMatch(/webgpu.*No supported adapters.*Vulkan/s);
  });
});
