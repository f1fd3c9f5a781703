// Execution provider choice: which EP to ask onnxruntime for, what to warn about, and the message when it cannot
// load. Pure (the facts about this onnxruntime-node install are passed in), so it is testable without a GPU.

import type { ExecutionProviderName, ModelManifest } from '@app/model';
import { ExecutionProviderUnavailableError } from '../errors';

export interface BackendFacts {
  /** onnxruntime-node's listSupportedBackends(). */
  backends: { name: string; bundled: boolean }[];
  /** Whether libonnxruntime_providers_cuda is present next to the binding (it is downloaded at install time). */
  cudaProviderInstalled: boolean;
  platform: string;
  arch: string;
}

export interface ProviderPlan {
  executionProvider: ExecutionProviderName;
  warnings: string[];
}

export const CUDA_INSTALL_HINT =
  'The CUDA provider is not in the onnxruntime-node npm package: `falconq setup cuda` installs the one that matches ' +
  'onnxruntime-node 1.29.0 (CUDA 13: from npm, sha256-checked; CUDA 12: onnxruntime-node\'s installer) and lists the ' +
  'CUDA libraries this host still lacks.';

/** Picks the EP for a model, or throws (or falls back to cpu when asked) with the reason and the way to get it. */
export function planExecutionProvider(
  requested: ExecutionProviderName,
  manifest: Pick<ModelManifest, 'target' | 'executionProviders' | 'activations'>,
  facts: BackendFacts,
  options: { fallbackToCpu?: boolean } = {},
): ProviderPlan {
  const warnings: string[] = [];
  const unavailable = providerUnavailableReason(requested, facts);
  let executionProvider = requested;
  if (unavailable) {
    if (!options.fallbackToCpu) throw new ExecutionProviderUnavailableError(requested, unavailable, true);
    warnings.push(`${unavailable} Falling back to the cpu execution provider.`);
    executionProvider = 'cpu';
  }
  warnings.push(...targetWarnings(executionProvider, manifest));
  return { executionProvider, warnings };
}

export function providerUnavailableReason(requested: ExecutionProviderName, facts: BackendFacts): string | undefined {
  const backend = facts.backends.find((entry) => entry.name === requested);
  switch (requested) {
    case 'cpu':
      return undefined;
    case 'webgpu':
      if (!backend) {
        return (
          `The webgpu execution provider is not available: this onnxruntime-node build for ${facts.platform}-${facts.arch} ` +
          'does not include it (the linux-x64, win32-x64 and darwin-arm64 builds of onnxruntime-node 1.30 bundle it).'
        );
      }
      return undefined;
    case 'cuda':
      if (facts.platform !== 'linux' || facts.arch !== 'x64') {
        return `The cuda execution provider is not available on ${facts.platform}-${facts.arch}: onnxruntime-node ships it for linux-x64 only.`;
      }
      if (!backend) return `The cuda execution provider is not available: onnxruntime-node does not list it. ${CUDA_INSTALL_HINT}`;
      if (!facts.cudaProviderInstalled) {
        return `The cuda execution provider is not installed: libonnxruntime_providers_cuda.so is missing. ${CUDA_INSTALL_HINT}`;
      }
      return undefined;
    default:
      return `Unknown execution provider "${String(requested)}": use cpu, webgpu or cuda.`;
  }
}

function targetWarnings(
  ep: ExecutionProviderName,
  manifest: Pick<ModelManifest, 'target' | 'executionProviders' | 'activations'>,
): string[] {
  if (ep === 'cuda' && manifest.activations === 'fp32') {
    return [
      'This model has fp32 activations and the cuda GroupQueryAttention kernel has fp16/bf16 variants only: ' +
        'session creation or the first run may fail; use a gpu-target (fp16) model with cuda.',
    ];
  }
  if (manifest.executionProviders.includes(ep)) return [];
  if (ep !== 'cpu' && manifest.target === 'cpu') {
    return [
      `This model was converted for the cpu target (${manifest.activations} activations); it runs on ${ep} but ` +
        'slower and with more memory than a gpu-target model (falconq model convert --target gpu).',
    ];
  }
  if (ep === 'cpu' && manifest.target === 'gpu') {
    return [`This model was converted for the gpu target (${manifest.activations}); it runs on cpu, but a cpu-target model is faster there.`];
  }
  return [`This model lists execution providers ${manifest.executionProviders.join(', ')}, not ${ep}.`];
}

/** Wraps onnxruntime's own error when creating a session with this EP fails, naming the cause where it can. */
export function describeSessionFailure(ep: ExecutionProviderName, modelPath: string, error: unknown): string {
  const cause = error instanceof Error ? error.message : String(error);
  const base = `Could not create an onnxruntime session for ${modelPath} with the ${ep} execution provider: ${cause}`;
  if (ep === 'cuda') return `${base}. ${cudaFailureCause(cause)}`;
  if (ep === 'webgpu') {
    return `${base}. WebGPU needs a GPU driver with Vulkan (linux) or D3D12 (windows) that Dawn can use; check vulkaninfo.`;
  }
  return base;
}

/** What onnxruntime's CUDA error means, and the fix. */
export function cudaFailureCause(message: string): string {
  const library = /(lib[\w.+-]+\.so(?:\.\d+)*): cannot open shared object file/.exec(message)?.[1];
  if (library) {
    return `Cause: the CUDA provider needs ${library}, which the dynamic loader cannot find. ` +
      '`falconq setup cuda --check` lists every missing CUDA library and the line that fixes it (usually LD_LIBRARY_PATH).';
  }
  if (/version mismatch/i.test(message)) {
    return 'Cause: libonnxruntime_providers_cuda.so was built for another onnxruntime version than this onnxruntime-node; ' +
      'run `falconq setup cuda` to install the matching one.';
  }
  if (/no CUDA-capable device|CUDA driver version is insufficient|cudaErrorNoDevice|cudaGetDeviceCount|CUDA failure 100|CUDA error cudaErrorInvalidDevice/i.test(message)) {
    return 'Cause: no usable NVIDIA GPU is visible to this process (check nvidia-smi, the driver, CUDA_VISIBLE_DEVICES and --device-id).';
  }
  return `The CUDA provider needs a visible NVIDIA GPU and the CUDA libraries on the library path. ${CUDA_INSTALL_HINT}`;
}
