import * as fs from 'node:fs';
import * as path from 'node:path';
import { setImmediate as breathe } from 'node:timers/promises';
import { Checkpoint } from './checkpoint';
import { type FalconConfig, readFalconConfig } from './config';
import { ModelInputError } from './errors';
import { ExternalDataWriter } from './external-data';
import { buildDecodeLoopGraph, DECODE_LOOP_DEQUANTIZED_FILE, DECODE_LOOP_FILE, DECODE_LOOP_IO, type DecodeLoopGraph } from './decode-loop-graph';
import { dequantizedWeightInitializers } from './dequantized-weights';
import { projectionViewInitializers } from './projection-views';
import { buildFalconGraph, type FalconGraph, type GraphTuning, hfTensor, jobSources, type WeightJob } from './graph';
import type { ExecutionProviderName, ModelManifest, ModelTarget, WeightDType } from './manifest';
import { checksumModelFiles } from './verify';
import { CheckpointMaterializer, jobBytes, materializeJob, type WeightMaterializer } from './materialize';
import { encodeModel, initializersUsedBy, type InitializerSpec } from './onnx/model';
import { buildDirectoryAtomically, directorySize, MANIFEST_FILE } from './output-dir';
import { assertBlockSize } from './quantize';

export const CONVERTER_NAME = 'falconq-model-converter 0.1.0';
export const MODEL_FILE = 'model.onnx';
export const WEIGHTS_FILE = 'model.onnx.data';
export const TOKENIZER_FILE = 'tokenizer.json';
export const TOKENIZER_CONFIG_FILE = 'tokenizer_config.json';
/** MatMulNBits accuracy_level: 4 = int8 activations (fast on CPU and WebGPU); 0 = compute in the activation type. */
export const DEFAULT_ACCURACY_LEVEL = 4;

export type ProgressCallback = (stage: string, done: number, total: number) => void;

export interface BuildOptions {
  weights?: WeightDType;
  target?: ModelTarget;
  blockSize?: number;
  /** MatMulNBits accuracy_level (default 4); 0 makes int4 models compute exactly on the dequantized weights. */
  accuracyLevel?: 0 | 1 | 2 | 3 | 4;
  /** Elements read and quantized at a time (bounds memory on big matrices; default 16M). */
  chunkElements?: number;
  /** Graph shape choices for kernel selection (benchmarks); the defaults are the measured best. */
  tuning?: Partial<GraphTuning>;
  /** Replace an existing model directory. */
  force?: boolean;
  onProgress?: ProgressCallback;
  /** Abort (Ctrl-C): the build stops at the next chunk and removes its partial directory. */
  signal?: AbortSignal;
}

export interface ConvertOptions extends BuildOptions {
  out: string;
  /** Recorded in the manifest; defaults to the local directory. */
  source?: ModelManifest['source'];
}

export interface ConvertResult {
  dir: string;
  manifest: ModelManifest;
  seconds: number;
}

interface ResolvedBuild {
  weights: WeightDType;
  target: ModelTarget;
  blockSize: number;
  accuracyLevel: number;
  chunkElements?: number;
  tuning?: Partial<GraphTuning>;
}

export function resolveBuildOptions(options: BuildOptions, hiddenSize?: number): ResolvedBuild {
  const weights = options.weights ?? 'int4';
  const target = options.target ?? 'cpu';
  const blockSize = options.blockSize ?? 32;
  if (!['int4', 'fp16', 'fp32'].includes(weights)) throw new ModelInputError(`--weights ${weights}: expected int4, fp16 or fp32`);
  if (!['cpu', 'gpu'].includes(target)) throw new ModelInputError(`--target ${target}: expected cpu or gpu`);
  try {
    assertBlockSize(blockSize);
  } catch (error) {
    throw new ModelInputError(`--block-size: ${(error as Error).message}`);
  }
  const activations = target === 'gpu' ? 'fp16' : 'fp32';
  if (weights !== 'int4' && weights !== activations) {
    // Float weights feed plain MatMul, whose inputs share one type: they are stored in the activation type.
    throw new ModelInputError(`--weights ${weights} needs --target ${weights === 'fp16' ? 'gpu' : 'cpu'} (${target} runs ${activations} activations); use --weights ${activations} or int4`);
  }
  if (weights === 'int4' && hiddenSize !== undefined && hiddenSize % blockSize !== 0) {
    throw new ModelInputError(`--block-size ${blockSize} must divide hidden_size ${hiddenSize} (int4 embedding rows)`);
  }
  const accuracyLevel = options.accuracyLevel ?? DEFAULT_ACCURACY_LEVEL;
  if (![0, 1, 2, 3, 4].includes(accuracyLevel)) throw new ModelInputError(`accuracy level ${accuracyLevel}: expected 0 to 4`);
  return { weights, target, blockSize, accuracyLevel, chunkElements: options.chunkElements, tuning: options.tuning };
}

/** Converts a local Hugging Face Falcon checkpoint directory into a falconq model directory. */
export async function convertCheckpoint(sourceDir: string, options: ConvertOptions): Promise<ConvertResult> {
  const started = Date.now();
  const config = readFalconConfig(sourceDir);
  const build = resolveBuildOptions(options, config.shape.hiddenSize);
  const tokenizerPath = path.join(sourceDir, TOKENIZER_FILE);
  if (!fs.existsSync(tokenizerPath)) throw new ModelInputError(`${tokenizerPath}: missing (the model directory needs the tokenizer)`);
  const checkpoint = Checkpoint.open(sourceDir);
  try {
    const tiedEmbedding = !checkpoint.has(hfTensor.lmHead);
    const graph = buildFalconGraph({
      shape: config.shape,
      weights: build.weights,
      activations: build.target === 'gpu' ? 'fp16' : 'fp32',
      blockSize: build.blockSize,
      accuracyLevel: build.accuracyLevel,
      tiedEmbedding,
      tuning: build.tuning,
    });
    preflight(graph.jobs, checkpoint);
    const materializer = new CheckpointMaterializer((name, shape, start, count) => checkpoint.readRows(name, shape, start, count));
    const manifest = await writeModelDirectory({
      out: options.out,
      force: options.force ?? false,
      config,
      graph,
      build,
      materializer,
      copyTokenizer: (dir) => copyTokenizerFiles(sourceDir, dir),
      source: options.source ?? { kind: 'local', id: path.resolve(sourceDir) },
      onProgress: options.onProgress,
      signal: options.signal,
    });
    return { dir: path.resolve(options.out), manifest, seconds: (Date.now() - started) / 1000 };
  } finally {
    checkpoint.close();
  }
}

/** Every tensor exists with the right shape before anything is written. */
function preflight(jobs: WeightJob[], checkpoint: Checkpoint): void {
  for (const { source, shape: expected } of jobs.flatMap(jobSources)) {
    const { file, tensor } = checkpoint.info(source);
    if (tensor.shape.length !== expected.length || tensor.shape.some((d, i) => d !== expected[i])) {
      throw new ModelInputError(`${file}: tensor ${source} has shape [${tensor.shape}], expected [${expected}]`);
    }
  }
}

function copyTokenizerFiles(sourceDir: string, dir: string): void {
  fs.copyFileSync(path.join(sourceDir, TOKENIZER_FILE), path.join(dir, TOKENIZER_FILE));
  const configPath = path.join(sourceDir, TOKENIZER_CONFIG_FILE);
  if (fs.existsSync(configPath)) fs.copyFileSync(configPath, path.join(dir, TOKENIZER_CONFIG_FILE));
  else fs.writeFileSync(path.join(dir, TOKENIZER_CONFIG_FILE), '{}\n');
}

export interface WriteModelDirectoryOptions {
  out: string;
  force: boolean;
  config: FalconConfig;
  graph: FalconGraph;
  build: ResolvedBuild;
  materializer: WeightMaterializer;
  copyTokenizer: (dir: string) => void;
  source: ModelManifest['source'];
  onProgress?: ProgressCallback;
  signal?: AbortSignal;
}

/** Streams the weights, writes model.onnx, the tokenizer files and falconq.json, atomically. */
export async function writeModelDirectory(options: WriteModelDirectoryOptions): Promise<ModelManifest> {
  const { graph, build, config } = options;
  const activations = build.target === 'gpu' ? 'fp16' : 'fp32';
  const progress = options.onProgress ?? (() => undefined);
  return buildDirectoryAtomically(options.out, options.force, async (dir) => {
    const writer = new ExternalDataWriter(path.join(dir, WEIGHTS_FILE), WEIGHTS_FILE);
    const initializers: InitializerSpec[] = [...graph.inlineInitializers];
    const totalBytes = graph.jobs.reduce((sum, job) => sum + jobBytes(job, activations, build.blockSize), 0);
    let payloadBytes = 0;
    try {
      for (const job of graph.jobs) {
        const before = payloadBytes;
        const jobTotal = jobBytes(job, activations, build.blockSize);
        const writtenAtStart = writer.size;
        initializers.push(...(await materializeJob(job, options.materializer, writer, {
          activations,
          blockSize: build.blockSize,
          chunkElements: build.chunkElements,
          onChunk: (size) => progress('weights', Math.min(before + jobTotal, before + Math.max(0, size - writtenAtStart)), totalBytes),
          yieldEvery: async () => {
            await breathe();
            options.signal?.throwIfAborted();
          },
        })));
        payloadBytes = before + jobTotal;
        progress('weights', payloadBytes, totalBytes);
      }
    } finally {
      writer.close();
    }
    progress('graph', 0, 1);
    const header = {
      producerName: 'falconq',
      producerVersion: CONVERTER_NAME,
      irVersion: 10,
      opsets: [{ domain: '', version: 21 }, { domain: 'com.microsoft', version: 1 }],
    };
    fs.writeFileSync(path.join(dir, MODEL_FILE), encodeModel({ ...header, graphName: 'falcon', nodes: graph.nodes, initializers, inputs: graph.inputs, outputs: graph.outputs }));
    // The same decoder inside a Loop, over the same external weights file (docs/engine.md, "Decode loop"); for int4
    // weights also with its matmuls over weights dequantized at load.
    const writeLoop = (file: string, loop: DecodeLoopGraph) => {
      const withViews = [...initializers, ...projectionViewInitializers(loop.projectionViews, initializers)];
      fs.writeFileSync(path.join(dir, file), encodeModel({
        ...header,
        graphName: 'falcon_decode_loop',
        nodes: loop.nodes,
        // Only what the loop reads: the fused weights are read through their views alone, dequantized ones through theirs.
        initializers: initializersUsedBy(loop.nodes, [...withViews, ...dequantizedWeightInitializers(loop.dequantizedWeights, withViews), ...loop.inlineInitializers]),
        inputs: loop.inputs,
        outputs: loop.outputs,
      }));
    };
    const loop = buildDecodeLoopGraph(graph, config.shape);
    writeLoop(DECODE_LOOP_FILE, loop);
    const int4 = build.weights === 'int4';
    if (int4) writeLoop(DECODE_LOOP_DEQUANTIZED_FILE, buildDecodeLoopGraph(graph, config.shape, { dequantizeWeights: true }));
    options.copyTokenizer(dir);
    progress('graph', 1, 1);
    const executionProviders: ExecutionProviderName[] = build.target === 'gpu' ? ['webgpu', 'cuda'] : ['cpu'];
    const manifest: ModelManifest = {
      format: 'falconq-model',
      formatVersion: 1,
      architecture: 'falcon',
      shape: config.shape,
      weights: build.weights === 'int4'
        ? { dtype: 'int4', quantization: { method: 'rtn-symmetric', bits: 4, blockSize: build.blockSize, accuracyLevel: build.accuracyLevel } }
        : { dtype: build.weights },
      activations,
      kvDType: activations,
      target: build.target,
      executionProviders,
      io: graph.io,
      tokens: { eos: config.eosTokenId, bos: config.bosTokenId, pad: config.eosTokenId },
      files: {
        model: MODEL_FILE, decodeLoop: DECODE_LOOP_FILE, ...(int4 ? { decodeLoopDequantized: DECODE_LOOP_DEQUANTIZED_FILE } : {}),
        weights: WEIGHTS_FILE, tokenizer: TOKENIZER_FILE, tokenizerConfig: TOKENIZER_CONFIG_FILE,
      },
      decodeLoop: { candidates: loop.candidates, io: { ...DECODE_LOOP_IO } },
      source: options.source,
      sizeBytes: directorySize(dir),
      checksums: checksumModelFiles(dir, [MANIFEST_FILE]),
      createdAt: new Date().toISOString(),
      converter: CONVERTER_NAME,
    };
    fs.writeFileSync(path.join(dir, MANIFEST_FILE), JSON.stringify(manifest, null, 2) + '\n');
    return manifest;
  });
}

export function readManifest(dir: string): ModelManifest {
  const file = path.join(dir, MANIFEST_FILE);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    throw new ModelInputError(`${file}: missing; ${dir} is not a converted falconq model directory`);
  }
  let manifest: ModelManifest;
  try {
    manifest = JSON.parse(text) as ModelManifest;
  } catch (error) {
    throw new ModelInputError(`${file}: not valid JSON (${(error as Error).message})`);
  }
  if (manifest?.format !== 'falconq-model') throw new ModelInputError(`${file}: format is ${String(manifest.format)}, expected falconq-model`);
  return manifest;
}
