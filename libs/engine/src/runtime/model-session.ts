// The onnxruntime session of a falconq model directory. Only thread-side modules import this file (it loads
// onnxruntime-node).

import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import type { ExecutionProviderName, ModelManifest } from '@app/model';
import type { KvPlacement } from '../scheduler/forward-runner';
import { type BackendFacts, describeSessionFailure, planExecutionProvider } from './providers';
import { EngineConfigurationError, ExecutionProviderUnavailableError } from '../errors';

/** falconq.json (libs/model writes it; the name is repeated here so the thread does not load libs/model's code). */
export const MANIFEST_FILE = 'falconq.json';

export type WebGpuBufferCacheMode = 'disabled' | 'lazyRelease' | 'simple' | 'bucket';

export interface ModelSessionOptions {
  modelDir: string;
  executionProvider: ExecutionProviderName;
  deviceId?: number;
  intraOpThreads?: number;
  fallbackToCpu?: boolean;
  kvPlacement?: 'auto' | KvPlacement;
  webgpuBufferCacheMode?: WebGpuBufferCacheMode;
  /** cuda: the int4 matmuls run onnxruntime's fpA_intB GEMM (EngineOptions.cudaFpaIntbGemm, resolved). */
  cudaFpaIntbGemm?: boolean;
  /** Open decode-loop.onnx (several decode steps per run) instead of model.onnx; host KV only. */
  decodeLoop?: boolean;
  /** With decodeLoop: open the loop whose matmuls run on weights dequantized at load (EngineOptions.dequantizeWeights). */
  dequantizeWeights?: boolean;
}

export interface ModelSession {
  session: ort.InferenceSession;
  /** The execution provider entry the session was created with (auxiliary sessions reuse it). */
  providerConfig: ort.InferenceSession.ExecutionProviderConfig;
  manifest: ModelManifest;
  executionProvider: ExecutionProviderName;
  kvPlacement: KvPlacement;
  /** The session is decode-loop.onnx: model.onnx's inputs and outputs plus manifest.decodeLoop.io. */
  decodeLoop: boolean;
  /** The decode loop's matmuls run on weights dequantized at load. */
  dequantizedWeights: boolean;
  warnings: string[];
  pastKeyNames: string[];
  pastValueNames: string[];
  presentKeyNames: string[];
  presentValueNames: string[];
}

export function readManifest(modelDir: string): ModelManifest {
  const file = path.join(modelDir, MANIFEST_FILE);
  let manifest: ModelManifest;
  try {
    manifest = JSON.parse(fs.readFileSync(file, 'utf8')) as ModelManifest;
  } catch (error) {
    throw new EngineConfigurationError(`${file}: cannot read the model manifest (${(error as Error).message}); is ${modelDir} a falconq model directory?`);
  }
  if (manifest.format !== 'falconq-model' || manifest.formatVersion !== 1) {
    throw new EngineConfigurationError(`${file}: not a falconq model manifest (format ${String(manifest.format)} v${String(manifest.formatVersion)})`);
  }
  for (const field of ['shape', 'io', 'tokens', 'files'] as const) {
    if (!manifest[field]) throw new EngineConfigurationError(`${file}: missing field "${field}"`);
  }
  return manifest;
}

export function backendFacts(): BackendFacts {
  let cudaProviderInstalled = false;
  try {
    const root = path.dirname(require.resolve('onnxruntime-node/package.json'));
    const binDir = path.join(root, 'bin', 'napi-v6', process.platform, process.arch);
    cudaProviderInstalled = fs.existsSync(path.join(binDir, 'libonnxruntime_providers_cuda.so'));
  } catch {
    cudaProviderInstalled = false;
  }
  return { backends: ort.listSupportedBackends(), cudaProviderInstalled, platform: process.platform, arch: process.arch };
}

export const layerName = (pattern: string, layer: number) => pattern.replace('%d', String(layer));

export async function openModelSession(options: ModelSessionOptions): Promise<ModelSession> {
  const manifest = readManifest(options.modelDir);
  const plan = planExecutionProvider(options.executionProvider, manifest, backendFacts(), { fallbackToCpu: options.fallbackToCpu });
  const layers = Array.from({ length: manifest.shape.numLayers }, (_, i) => i);
  const io = manifest.io;
  const names = {
    pastKeyNames: layers.map((i) => layerName(io.pastKey, i)),
    pastValueNames: layers.map((i) => layerName(io.pastValue, i)),
    presentKeyNames: layers.map((i) => layerName(io.presentKey, i)),
    presentValueNames: layers.map((i) => layerName(io.presentValue, i)),
  };
  const decodeLoop = options.decodeLoop === true;
  if (decodeLoop && !(manifest.files.decodeLoop && manifest.decodeLoop)) {
    throw new EngineConfigurationError(`${options.modelDir} has no decode-loop graph (converted by an older falconq): convert it again, or decode one step per run`);
  }
  const dequantizeWeights = options.dequantizeWeights === true;
  if (dequantizeWeights && !decodeLoop) throw new EngineConfigurationError('dequantizeWeights: the weights are dequantized in the decode loop\'s graph, and this engine decodes one step per run (set decodeChunkSteps above 1)');
  if (dequantizeWeights && !manifest.files.decodeLoopDequantized) {
    throw new EngineConfigurationError(`${options.modelDir} has no decode loop over dequantized weights (${manifest.weights.dtype === 'int4' ? 'converted by an older falconq: convert it again' : `its weights are ${manifest.weights.dtype}, not int4`})`);
  }
  const loopFile = dequantizeWeights ? manifest.files.decodeLoopDequantized : manifest.files.decodeLoop;
  const modelPath = path.join(options.modelDir, decodeLoop ? (loopFile as string) : manifest.files.model);

  const create = async (ep: ExecutionProviderName) => {
    const kvPlacement = decodeLoop ? 'host' : chooseKvPlacement(ep, options.kvPlacement ?? 'auto');
    const provider = providerConfig(ep, options);
    const sessionOptions: ort.InferenceSession.SessionOptions = {
      executionProviders: [provider],
      graphOptimizationLevel: 'all',
      // The engine thread should not burn the cores the owner's event loop needs while it waits between steps.
      extra: {
        // disable_quant_qdq: onnxruntime's constant folding then folds DequantizeLinear too, so the dequantized
        // loop's weights are computed once, here, instead of on every run.
        session: { intra_op: { allow_spinning: '0' }, ...(dequantizeWeights ? { disable_quant_qdq: '1' } : {}) },
        // The session key wins over onnxruntime's ORT_FPA_INTB_GEMM environment variable: the engine's option decides.
        ...(ep === 'cuda' ? { ep: { cuda: { fpa_intb_gemm: options.cudaFpaIntbGemm ? '1' : '0' } } } : {}),
      },
    };
    if (options.intraOpThreads) sessionOptions.intraOpNumThreads = options.intraOpThreads;
    if (kvPlacement !== 'host' && ep === 'webgpu') {
      const location: Record<string, ort.Tensor.DataLocation> = {};
      for (const name of [...names.presentKeyNames, ...names.presentValueNames]) location[name] = 'gpu-buffer';
      sessionOptions.preferredOutputLocation = location;
    }
    try {
      return { session: await ort.InferenceSession.create(modelPath, sessionOptions), kvPlacement, providerConfig: provider };
    } catch (error) {
      throw new ExecutionProviderUnavailableError(ep, describeSessionFailure(ep, modelPath, error));
    }
  };

  const warnings = [...plan.warnings];
  let executionProvider = plan.executionProvider;
  let created: Awaited<ReturnType<typeof create>>;
  try {
    created = await create(executionProvider);
  } catch (error) {
    if (!options.fallbackToCpu || executionProvider === 'cpu') throw error;
    warnings.push(`${(error as Error).message} Falling back to the cpu execution provider.`);
    executionProvider = 'cpu';
    created = await create('cpu');
  }
  checkGraphIo(created.session, manifest, names, modelPath);
  return { ...created, manifest, executionProvider, decodeLoop, dequantizedWeights: dequantizeWeights, warnings, ...names };
}

/**
 * host: KV in host memory (cpu; cuda, which has no GPU-buffer binding in onnxruntime-node 1.30). device and
 * device-merge: the presents are fed back as returned, never read by JS; on webgpu they stay in GPU buffers. On
 * another EP these run with host tensors (how the tests cover them without a GPU).
 */
export function chooseKvPlacement(ep: ExecutionProviderName, requested: 'auto' | KvPlacement): KvPlacement {
  if (requested === 'auto') return ep === 'webgpu' ? 'device-merge' : 'host';
  return requested;
}

function providerConfig(ep: ExecutionProviderName, options: ModelSessionOptions): ort.InferenceSession.ExecutionProviderConfig {
  if (ep === 'cuda') return { name: 'cuda', deviceId: options.deviceId ?? 0 };
  if (ep === 'webgpu') {
    const config: Record<string, unknown> = { name: 'webgpu' };
    if (options.webgpuBufferCacheMode) config.storageBufferCacheMode = options.webgpuBufferCacheMode;
    return config as unknown as ort.InferenceSession.ExecutionProviderConfig;
  }
  return 'cpu';
}

function checkGraphIo(session: ort.InferenceSession, manifest: ModelManifest, names: Record<string, string[]>, modelPath: string): void {
  const inputs = new Set(session.inputNames);
  const outputs = new Set(session.outputNames);
  const io = manifest.io;
  const wantedInputs = [io.inputIds, io.attentionMask, ...names.pastKeyNames, ...names.pastValueNames];
  const wantedOutputs = [io.logits, io.topLogits, io.topIds, ...names.presentKeyNames, ...names.presentValueNames];
  const missing = [...wantedInputs.filter((n) => !inputs.has(n)).map((n) => `input ${n}`), ...wantedOutputs.filter((n) => !outputs.has(n)).map((n) => `output ${n}`)];
  if (missing.length > 0) {
    throw new EngineConfigurationError(`${modelPath} does not match its ${MANIFEST_FILE}: missing ${missing.slice(0, 4).join(', ')}${missing.length > 4 ? ', ...' : ''}`);
  }
}

/**
 * A second session on the same execution provider (and WebGPU device) as the model's, for a small helper graph;
 * `gpuOutputs` stay in GPU buffers on webgpu.
 */
export async function openAuxiliarySession(model: ModelSession, graph: Uint8Array, gpuOutputs: string[]): Promise<ort.InferenceSession> {
  const options: ort.InferenceSession.SessionOptions = { executionProviders: [model.providerConfig], graphOptimizationLevel: 'all' };
  if (model.executionProvider === 'webgpu') {
    options.preferredOutputLocation = Object.fromEntries(gpuOutputs.map((name) => [name, 'gpu-buffer' as const]));
  }
  return ort.InferenceSession.create(graph, options);
}
