import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Command } from 'commander';
import { SWITCH_CHOICES, type SwitchChoice, decodeRunText, type EngineInfo, type EngineOptions, type EngineStats, GenerationEngine, type GenerationResult, Tokenizer, warmUpText } from '@app/engine';
import { Prng, type ExecutionProviderName, type ModelManifest } from '@app/model';
import { parseInteger, parseNumber, parseProvider } from './generate';

interface BenchFlags {
  model: string;
  ep: ExecutionProviderName;
  deviceId?: number;
  batch: number[];
  promptLen: number;
  newTokens: number;
  json?: boolean;
  out?: string;
  fullLogits?: boolean;
  thread?: boolean;
  kv: 'auto' | 'host' | 'device' | 'device-merge';
  decodeChunk?: number;
  decodeChunkMin?: number;
  cudaFpaIntb: SwitchChoice;
  dequantizeWeights?: boolean;
  prefillWarmUp: SwitchChoice;
  prefillChunk?: number;
  prefillRunCost?: number;
  joinGroup?: number;
  joinMaxWait?: number;
  mixedAdmission: 'both' | 'continuous';
  webgpuCacheMode?: 'disabled' | 'lazyRelease' | 'simple' | 'bucket';
  maxSeqLen?: number;
  mixed: boolean;
  mixedRequests?: number;
  mixedRate?: number;
  mixedInFlight?: number;
  mixedSlots?: number;
  seed: number;
  gpuMemoryInterval: number;
}

export function registerBenchCommand(program: Command): void {
  program
    .command('bench')
    .description('Measure the engine: static batches (tokens/s, ms per decode step, prefill, time to first token, memory) and a mixed workload, continuous vs static batching')
    .requiredOption('--model <dir>', 'converted model directory (falconq.json)')
    .option('--ep <provider>', 'execution provider: cpu, webgpu, cuda, or auto (cuda where it loads, else webgpu, else cpu)', parseProvider, 'cpu')
    .option('--device-id <n>', 'GPU index (cuda; also the card nvidia-smi watches)', parseInteger('--device-id'))
    .option('--batch <list>', 'batch sizes, comma separated', parseList, [1, 8])
    .option('--prompt-len <n>', 'prompt tokens per sequence', parseInteger('--prompt-len'), 64)
    .option('--new-tokens <n>', 'generated tokens per sequence', parseInteger('--new-tokens'), 128)
    .option('--json', 'print the JSON report instead of the tables')
    .option('--out <file>', 'write the JSON report to this file')
    .option('--full-logits', 'fetch the full logits output every step (default: only the top-k outputs when every row allows it)')
    .option('--thread', 'run the engine in its worker_thread (default: in-process, the bare engine)')
    .option('--kv <placement>', 'KV cache placement: auto (device-merge on webgpu, else host), host, device, device-merge', parseKv, 'auto')
    .option('--decode-chunk <n>', 'the longest decode-loop run in steps (engine default: 128 on cuda, else 1; > 1 runs the decode-loop graph)', parseAtLeast('--decode-chunk', 1))
    .option('--decode-chunk-min <n>', 'run length when a row may free for a newcomer (engine default: 32 on cuda with the default --decode-chunk, else --decode-chunk)', parseAtLeast('--decode-chunk-min', 1))
    .option('--cuda-fpa-intb <when>', 'cuda: onnxruntime\'s fpA_intB GEMM for the int4 matmuls: auto (on above 16 slots), on, off', parseSwitch('--cuda-fpa-intb'), 'auto')
    .option('--dequantize-weights', 'decode loop: run its matmuls as fp16 GEMMs over the int4 weights dequantized once at load (2 bytes a parameter of GPU memory, ~14 GB for the 7B) instead of the int4 kernels')
    .option('--prefill-warm-up <when>', 'run the large prefill shapes once at load: auto (when the fpA_intB GEMM is on), on, off', parseSwitch('--prefill-warm-up'), 'auto')
    .option('--prefill-chunk <n>', 'prompt tokens per prefill run (engine default depends on the KV placement)', parseInteger('--prefill-chunk'))
    .option('--prefill-run-cost <tokens>', 'a prefill run\'s fixed cost in prompt tokens: newcomers of mixed lengths prefill in length-sorted runs where the padding saved is worth more (engine default 256 with host KV; >= --prefill-chunk keeps one run)', parseInteger('--prefill-run-cost'))
    .option('--join-group <n>', 'newcomers prefilled together while rows decode (engine default: slots / 8; 1 = each at once)', parseInteger('--join-group'))
    .option('--join-max-wait <steps>', 'most decode steps a newcomer waits for its join group (engine default 4)', parseInteger('--join-max-wait'))
    .option('--max-seq-len <n>', 'longest sequence (prompt + new tokens) the engine accepts; sizes the device KV cache (default: fits the workload)', parseInteger('--max-seq-len'))
    .option('--webgpu-cache-mode <mode>', 'WebGPU storage buffer cache: disabled, lazyRelease, simple, bucket', parseCacheMode)
    .option('--no-mixed', 'skip the mixed workload')
    .option('--mixed-requests <n>', 'requests in the mixed workload (default 2 x slots)', parseInteger('--mixed-requests'))
    .option('--mixed-rate <r>', 'mixed workload arrivals per second (default: 70% of the measured capacity)', parseNumber('--mixed-rate'))
    .option('--mixed-in-flight <n>', 'mixed workload as a queue worker feeds it: n requests outstanding, the next submitted as one finishes (arrival times ignored)', parseAtLeast('--mixed-in-flight', 1))
    .option('--mixed-admission <which>', 'mixed workload runs: both (continuous, then the static baseline) or continuous', parseMixedAdmission, 'both')
    .option('--mixed-slots <n>', 'slots for the mixed workload (default: the largest batch)', parseInteger('--mixed-slots'))
    .option('--seed <n>', 'seed of the synthetic prompts and arrivals', parseInteger('--seed'), 1)
    .option('--gpu-memory-interval <ms>', 'nvidia-smi memory sampling period; 0 = do not sample (peak GPU memory n/a)', parseAtLeast('--gpu-memory-interval', 0), 100)
    .action(async (flags: BenchFlags) => {
      await bench(flags);
    });
}

// --- workload ---

/** Deterministic PRNG for prompts and arrivals (the same command gives the same workload): the model's mulberry32. */
class WorkloadRandom extends Prng {
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }
}

/** Prompts of exact token length: random ids from the vocabulary, special ids excluded. */
function syntheticPrompt(random: WorkloadRandom, length: number, usable: number[]): number[] {
  return Array.from({ length }, () => usable[Math.floor(random.next() * usable.length)]);
}

// --- measurement ---

/** Peak GPU memory from one long-running `nvidia-smi -lms`, so sampling continues while a run blocks this thread. */
class GpuMemoryMonitor {
  private peak = 0;
  private latest = 0;
  private constructor(
    private readonly child: ChildProcess,
    /** Long enough for a sample taken after the call. */
    private readonly settleMs: number,
  ) {
    let buffer = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      buffer += chunk.toString();
      const lines = buffer.split('\n');
      buffer = lines.pop() ?? '';
      for (const line of lines) {
        const value = Number(line.trim());
        if (Number.isFinite(value) && line.trim() !== '') {
          this.latest = value;
          this.peak = Math.max(this.peak, value);
        }
      }
    });
  }

  static start(deviceId: number, intervalMs: number): GpuMemoryMonitor | null {
    if (intervalMs === 0 || !nvidiaSmiAvailable()) return null;
    const child = spawn('nvidia-smi', ['--query-gpu=memory.used', '--format=csv,noheader,nounits', '-i', String(deviceId), '-lms', String(intervalMs)], { stdio: ['ignore', 'pipe', 'ignore'] });
    child.on('error', () => undefined); // a monitor that dies reports the peak it saw
    return new GpuMemoryMonitor(child, Math.max(250, 2.5 * intervalMs));
  }

  /** Waits for a fresh sample, then starts a new peak window. */
  async resetPeak(): Promise<number> {
    await sleep(this.settleMs);
    this.peak = this.latest;
    return this.latest;
  }

  async peakMiB(): Promise<number> {
    await sleep(this.settleMs);
    return this.peak;
  }

  stop(): void {
    this.child.kill();
  }
}

interface BatchRow {
  batch: number;
  tokensPerSecond: number;
  decodeMsPerStep: number;
  decodeSteps: number;
  prefillMs: number;
  prefillRuns: number;
  timeToFirstTokenMs: { mean: number; p50: number; max: number };
  wallMs: number;
  fullLogitsSteps: number;
  /** The engine of this row ran cuda's int4 matmuls on the fpA_intB GEMM (marked * in the table). */
  cudaFpaIntbGemm?: boolean;
  /** Prefill runs the engine of this row made at load (EngineOptions.prefillWarmUp) and their time. */
  warmUp?: EngineInfo['warmUp'];
  /** The engine's start, session load and warm-up included (EngineInfo.loadMs). */
  loadMs?: number;
  peakGpuMiB: number | null;
  gpuMiBBefore: number | null;
  hostRssMiB: number;
  hostPeakRssMiB: number;
}

interface MixedRun {
  admission: 'continuous' | 'static';
  requests: number;
  slots: number;
  wallMs: number;
  generatedTokens: number;
  tokensPerSecond: number;
  /** Rows per decode step: how full the batch ran (at most `slots`). */
  rowsPerDecodeStep: number;
  prefillRuns: number;
  prefillMs: number;
  latencyMs: { mean: number; p50: number; p95: number };
  timeToFirstTokenMs: { mean: number; p50: number; p95: number };
  peakGpuMiB: number | null;
}

async function bench(flags: BenchFlags): Promise<void> {
  const manifest = JSON.parse(fs.readFileSync(path.join(flags.model, 'falconq.json'), 'utf8')) as ModelManifest;
  const tokenizer = Tokenizer.fromModelDir(flags.model);
  const vocab = Math.min(manifest.shape.vocabSize, tokenizer.vocabSize);
  const usable = Array.from({ length: vocab }, (_, id) => id).filter((id) => !tokenizer.specialIds.has(id) && id !== manifest.tokens.eos);
  if (flags.promptLen + flags.newTokens > manifest.shape.contextLength) {
    throw new Error(`--prompt-len + --new-tokens (${flags.promptLen + flags.newTokens}) exceed the model's context of ${manifest.shape.contextLength}`);
  }
  const log = (line: string) => {
    if (!flags.json) process.stdout.write(`${line}\n`);
  };
  const monitor = GpuMemoryMonitor.start(flags.deviceId ?? 0, flags.gpuMemoryInterval);
  const report: Record<string, unknown> = { ...environment(flags, manifest), batches: [] as BatchRow[] };
  log(headerText(report));
  const engineOptions = (slots: number, admission: 'continuous' | 'static' = 'continuous'): EngineOptions => ({
    modelDir: flags.model,
    executionProvider: flags.ep,
    deviceId: flags.deviceId,
    slots,
    admission,
    forceFullLogits: flags.fullLogits,
    kvPlacement: flags.kv,
    decodeChunkSteps: flags.decodeChunk,
    decodeChunkMinSteps: flags.decodeChunkMin,
    cudaFpaIntbGemm: flags.cudaFpaIntb,
    dequantizeWeights: flags.dequantizeWeights,
    prefillWarmUp: flags.prefillWarmUp,
    prefillChunkTokens: flags.prefillChunk,
    prefillRunCostTokens: flags.prefillRunCost,
    joinGroup: flags.joinGroup === undefined ? undefined : Math.min(flags.joinGroup, slots),
    joinMaxWaitSteps: flags.joinMaxWait,
    maxSequenceLength: maxSequenceLength(flags, manifest.shape.contextLength),
    inProcess: !flags.thread,
    ...(flags.webgpuCacheMode ? { webgpuBufferCacheMode: flags.webgpuCacheMode } : {}),
    onWarning: (warning) => process.stderr.write(`falconq: warning: ${warning}\n`),
  });

  try {
    const random = new WorkloadRandom(flags.seed);
    const rows: BatchRow[] = [];
    log(batchTableHeader());
    for (const batch of flags.batch) {
      const engine = await GenerationEngine.start(engineOptions(batch));
      if (!report.engine) {
        report.engine = engine.info;
        log(`engine: ${engine.info.executionProvider}, kv ${engine.info.kvPlacement}, ${decodeRunText(engine.info)}, prefill budget ${engine.info.prefillChunkTokens} tokens at ${batch} slots${engine.info.prefillRunCostTokens === undefined ? '' : ` (runs cost ${engine.info.prefillRunCostTokens} tokens)`}, join group ${engine.info.joinGroup} (wait <= ${engine.info.joinMaxWaitSteps} steps), max sequence ${engine.info.contextLength}`);
      }
      try {
        const prompts = Array.from({ length: batch }, () => syntheticPrompt(random, flags.promptLen, usable));
        // Warm-up with the same shapes (WebGPU compiles its shaders on first use).
        await runBatch(engine, prompts, 2, 'warmup');
        const gpuBefore = monitor ? await monitor.resetPeak() : null;
        const before = await engine.stats();
        const started = performance.now();
        const results = await runBatch(engine, prompts, flags.newTokens, 'run');
        const wallMs = performance.now() - started;
        const after = await engine.stats();
        const row = { ...batchRow(batch, flags.newTokens, wallMs, results, before, after, gpuBefore, monitor ? await monitor.peakMiB() : null), cudaFpaIntbGemm: engine.info.cudaFpaIntbGemm, warmUp: engine.info.warmUp, loadMs: engine.info.loadMs };
        rows.push(row);
        log(batchTableLine(row));
      } finally {
        await engine.close();
      }
    }
    report.batches = rows;
    if (rows.some((row) => row.cudaFpaIntbGemm)) log("* int4 matmuls on onnxruntime's fpA_intB GEMM (--cuda-fpa-intb)");
    const warmedUp = rows.flatMap((row) => (row.warmUp && row.warmUp.runs > 0 ? [`batch ${row.batch} ${warmUpText({ warmUp: row.warmUp })}`] : []));
    if (warmedUp.length > 0) log(`at load (--prefill-warm-up): ${warmedUp.join('; ')}`);
    log(`engine start: ${rows.map((row) => `batch ${row.batch} ${((row.loadMs ?? 0) / 1000).toFixed(1)} s`).join(', ')}${(report.engine as EngineInfo | undefined)?.dequantizedWeights ? ' (weights dequantized at load, --dequantize-weights)' : ''}`);

    if (flags.mixed) {
      const slots = flags.mixedSlots ?? Math.max(...flags.batch);
      const widest = rows.find((row) => row.batch === slots) ?? rows[rows.length - 1];
      const count = flags.mixedRequests ?? 2 * slots;
      const meanNew = flags.newTokens;
      const rate = flags.mixedRate ?? Math.max(0.1, (0.7 * (widest?.tokensPerSecond ?? 10)) / meanNew);
      const workload = mixedWorkload(new WorkloadRandom(flags.seed + 1), count, rate, flags, usable, maxSequenceLength(flags, manifest.shape.contextLength));
      const arrivals = flags.mixedInFlight ? `${flags.mixedInFlight} in flight (the next as one finishes)` : `${rate.toFixed(2)} arrivals/s (Poisson)`;
      log(`\nmixed workload: ${count} requests, prompts ${flags.promptLen / 4 | 0}..${flags.promptLen * 2} tokens, outputs ${flags.newTokens / 4 | 0}..${flags.newTokens * 2} tokens, ${arrivals}, ${slots} slots`);
      const mixed: MixedRun[] = [];
      for (const admission of flags.mixedAdmission === 'continuous' ? (['continuous'] as const) : (['continuous', 'static'] as const)) {
        const engine = await GenerationEngine.start(engineOptions(slots, admission));
        if (warmUpText(engine.info)) log(`  ${admission} engine: ${warmUpText(engine.info)} at load`);
        try {
          await runBatch(engine, [syntheticPrompt(random, flags.promptLen, usable)], 2, 'warmup');
          if (monitor) await monitor.resetPeak();
          const run = await runMixed(engine, workload, admission, slots, flags.mixedInFlight);
          run.peakGpuMiB = monitor ? await monitor.peakMiB() : null;
          mixed.push(run);
          log(mixedLine(run));
        } finally {
          await engine.close();
        }
      }
      report.mixed = { ...(flags.mixedInFlight ? { inFlight: flags.mixedInFlight } : { arrivalsPerSecond: rate }), requests: count, runs: mixed };
    }
  } finally {
    monitor?.stop();
  }
  const json = JSON.stringify(report, null, 2);
  if (flags.out) {
    fs.writeFileSync(flags.out, `${json}\n`);
    log(`\nreport written to ${flags.out}`);
  }
  if (flags.json) process.stdout.write(`${json}\n`);
}

/** The longest sequence the workload makes (mixed prompts and outputs go up to twice the given lengths). */
function maxSequenceLength(flags: BenchFlags, context: number): number {
  if (flags.maxSeqLen !== undefined) return flags.maxSeqLen;
  const longest = flags.mixed ? 2 * (flags.promptLen + flags.newTokens) : flags.promptLen + flags.newTokens;
  return Math.min(context, Math.ceil(longest / 64) * 64);
}

async function runBatch(engine: GenerationEngine, prompts: number[][], newTokens: number, tag: string): Promise<GenerationResult[]> {
  return Promise.all(
    prompts.map((promptIds, i) =>
      engine.submit({ id: `${tag}-${i}`, prompt: '', promptIds, params: { maxNewTokens: newTokens, ignoreEos: true } }),
    ),
  );
}

interface MixedRequest {
  at: number;
  promptIds: number[];
  newTokens: number;
}

function mixedWorkload(random: WorkloadRandom, count: number, rate: number, flags: BenchFlags, usable: number[], context: number): MixedRequest[] {
  let at = 0;
  return Array.from({ length: count }, () => {
    at += (-Math.log(1 - random.next()) / rate) * 1000;
    const promptLength = random.int(Math.max(1, Math.floor(flags.promptLen / 4)), flags.promptLen * 2);
    const newTokens = Math.max(1, Math.min(random.int(Math.max(1, Math.floor(flags.newTokens / 4)), flags.newTokens * 2), context - promptLength));
    return { at, promptIds: syntheticPrompt(random, promptLength, usable), newTokens };
  });
}

async function runMixed(engine: GenerationEngine, workload: MixedRequest[], admission: 'continuous' | 'static', slots: number, inFlight?: number): Promise<MixedRun> {
  const submit = (i: number) => {
    const request = workload[i];
    return engine.submit({ id: `mixed-${i}`, prompt: '', promptIds: request.promptIds, params: { maxNewTokens: request.newTokens, ignoreEos: true } });
  };
  const before = await engine.stats();
  const started = performance.now();
  const results = inFlight
    ? await inLanes(workload.length, inFlight, submit)
    : await Promise.all(workload.map((request, i) => sleep(Math.max(0, request.at - (performance.now() - started))).then(() => submit(i))));
  const wallMs = performance.now() - started;
  const after = await engine.stats();
  const generated = results.reduce((sum, result) => sum + result.sequences[0].tokens.length, 0);
  const latency = results.map((result) => result.totalMs);
  const ttft = results.map((result) => result.timeToFirstTokenMs);
  const decodeSteps = after.decodeSteps - before.decodeSteps;
  return {
    admission,
    requests: workload.length,
    slots,
    wallMs,
    generatedTokens: generated,
    tokensPerSecond: generated / (wallMs / 1000),
    rowsPerDecodeStep: decodeSteps > 0 ? (after.decodeRows - before.decodeRows) / decodeSteps : 0,
    prefillRuns: after.prefillRuns - before.prefillRuns,
    prefillMs: after.prefillMsTotal - before.prefillMsTotal,
    latencyMs: { mean: mean(latency), p50: percentile(latency, 50), p95: percentile(latency, 95) },
    timeToFirstTokenMs: { mean: mean(ttft), p50: percentile(ttft, 50), p95: percentile(ttft, 95) },
    peakGpuMiB: null,
  };
}

/** Runs task(0..count-1) with at most `lanes` outstanding, starting the next as one finishes (a queue consumer). */
async function inLanes<T>(count: number, lanes: number, task: (i: number) => Promise<T>): Promise<T[]> {
  const results = new Array<T>(count);
  let next = 0;
  const lane = async () => {
    while (next < count) {
      const i = next++;
      results[i] = await task(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(lanes, count) }, lane));
  return results;
}

function batchRow(
  batch: number,
  newTokens: number,
  wallMs: number,
  results: GenerationResult[],
  before: EngineStats,
  after: EngineStats,
  gpuBefore: number | null,
  peakGpu: number | null,
): BatchRow {
  const ttft = results.map((result) => result.timeToFirstTokenMs);
  const decodeSteps = after.decodeSteps - before.decodeSteps;
  const memory = process.memoryUsage();
  return {
    batch,
    tokensPerSecond: (batch * newTokens) / (wallMs / 1000),
    decodeMsPerStep: decodeSteps > 0 ? (after.decodeMsTotal - before.decodeMsTotal) / decodeSteps : 0,
    decodeSteps,
    prefillMs: after.prefillMsTotal - before.prefillMsTotal,
    prefillRuns: after.prefillRuns - before.prefillRuns,
    timeToFirstTokenMs: { mean: mean(ttft), p50: percentile(ttft, 50), max: Math.max(...ttft) },
    wallMs,
    fullLogitsSteps: after.fullLogitsSteps - before.fullLogitsSteps,
    peakGpuMiB: peakGpu,
    gpuMiBBefore: gpuBefore,
    hostRssMiB: memory.rss / 2 ** 20,
    // maxRSS is the process's peak so far (KiB): monotonic over the whole bench.
    hostPeakRssMiB: process.resourceUsage().maxRSS / 1024,
  };
}

// --- report ---

function environment(flags: BenchFlags, manifest: ModelManifest): Record<string, unknown> {
  return {
    date: new Date().toISOString(),
    command: ['falconq', ...process.argv.slice(2)].join(' '),
    host: { hostname: os.hostname(), cpu: os.cpus()[0]?.model ?? 'unknown', cores: os.cpus().length, memoryGiB: +(os.totalmem() / 2 ** 30).toFixed(1) },
    gpus: gpuInfo(),
    node: process.version,
    onnxruntimeNode: packageVersion('onnxruntime-node'),
    model: {
      dir: path.resolve(flags.model),
      source: manifest.source,
      target: manifest.target,
      weights: manifest.weights,
      activations: manifest.activations,
      shape: manifest.shape,
      topK: manifest.io.topK,
      sizeBytes: manifest.sizeBytes,
    },
    options: {
      ep: flags.ep,
      deviceId: flags.deviceId ?? null,
      batches: flags.batch,
      promptLen: flags.promptLen,
      newTokens: flags.newTokens,
      fullLogits: Boolean(flags.fullLogits),
      mode: flags.thread ? 'worker_thread' : 'in-process',
      kv: flags.kv,
      maxSeqLen: maxSequenceLength(flags, manifest.shape.contextLength),
      prefillChunk: flags.prefillChunk ?? 'engine default',
      prefillRunCost: flags.prefillRunCost ?? 'engine default',
      joinGroup: flags.joinGroup ?? 'engine default',
      webgpuCacheMode: flags.webgpuCacheMode ?? 'default',
      decoding: 'greedy, eos ignored',
    },
  };
}

function headerText(report: Record<string, unknown>): string {
  const gpus = report.gpus as { name: string; memoryTotal: string; driver: string }[] | null;
  const model = report.model as { source: { kind: string; id: string }; target: string; weights: { dtype: string }; activations: string; shape: { numLayers: number; hiddenSize: number } };
  const options = report.options as Record<string, unknown>;
  return [
    `falconq bench  ${report.date as string}`,
    `command: ${report.command as string}`,
    `gpu: ${gpus ? gpus.map((gpu) => `${gpu.name} (${gpu.memoryTotal}, driver ${gpu.driver})`).join('; ') : 'n/a (no nvidia-smi)'}`,
    `host: ${(report.host as { cpu: string; cores: number }).cpu}, ${(report.host as { cores: number }).cores} cores; node ${report.node as string}; onnxruntime-node ${report.onnxruntimeNode as string}`,
    `model: ${model.source.kind}:${model.source.id}, ${model.shape.numLayers} layers x ${model.shape.hiddenSize}, ${model.weights.dtype} weights, ${model.activations} activations, ${model.target} target`,
    `ep ${options.ep as string}, ${options.mode as string}, kv ${options.kv as string}, prompt ${options.promptLen as number} tokens, ${options.newTokens as number} new tokens, full logits: ${String(options.fullLogits)}`,
  ].join('\n');
}

const COLUMNS = ['batch', 'tok/s', 'ms/step', 'prefill ms', 'ttft ms (mean/max)', 'wall s', 'peak GPU MiB', 'RSS MiB'];

function batchTableHeader(): string {
  return `\n${COLUMNS.map((column, i) => column.padStart(i === 0 ? 5 : 14)).join(' ')}`;
}

function batchTableLine(row: BatchRow): string {
  const cells = [
    `${row.batch}${row.cudaFpaIntbGemm ? '*' : ''}`.padStart(5),
    row.tokensPerSecond.toFixed(1),
    row.decodeMsPerStep.toFixed(2),
    row.prefillMs.toFixed(0),
    `${row.timeToFirstTokenMs.mean.toFixed(0)}/${row.timeToFirstTokenMs.max.toFixed(0)}`,
    (row.wallMs / 1000).toFixed(2),
    row.peakGpuMiB === null ? 'n/a' : String(row.peakGpuMiB),
    `${row.hostRssMiB.toFixed(0)} (peak ${row.hostPeakRssMiB.toFixed(0)})`,
  ];
  return cells.map((cell, i) => (i === 0 ? cell : cell.padStart(14))).join(' ');
}

function mixedLine(run: MixedRun): string {
  return (
    `  ${run.admission.padEnd(10)} ${run.tokensPerSecond.toFixed(1)} tok/s, wall ${(run.wallMs / 1000).toFixed(2)} s, ` +
    `latency mean/p50/p95 ${run.latencyMs.mean.toFixed(0)}/${run.latencyMs.p50.toFixed(0)}/${run.latencyMs.p95.toFixed(0)} ms, ` +
    `ttft mean/p95 ${run.timeToFirstTokenMs.mean.toFixed(0)}/${run.timeToFirstTokenMs.p95.toFixed(0)} ms, ` +
    `${run.rowsPerDecodeStep.toFixed(1)} rows/step, ${run.prefillRuns} prefill runs (${(run.prefillMs / 1000).toFixed(2)} s)` +
    (run.peakGpuMiB === null ? '' : `, peak GPU ${run.peakGpuMiB} MiB`)
  );
}

function gpuInfo(): { name: string; memoryTotal: string; driver: string }[] | null {
  if (!nvidiaSmiAvailable()) return null;
  try {
    const out = execFileSync('nvidia-smi', ['--query-gpu=name,memory.total,driver_version', '--format=csv,noheader'], { encoding: 'utf8', timeout: 10_000 });
    return out
      .trim()
      .split('\n')
      .map((line) => {
        const [name, memoryTotal, driver] = line.split(',').map((part) => part.trim());
        return { name, memoryTotal, driver };
      });
  } catch {
    return null;
  }
}

let nvidiaSmi: boolean | undefined;
function nvidiaSmiAvailable(): boolean {
  if (nvidiaSmi === undefined) {
    try {
      execFileSync('nvidia-smi', ['-L'], { stdio: 'ignore', timeout: 10_000 });
      nvidiaSmi = true;
    } catch {
      nvidiaSmi = false;
    }
  }
  return nvidiaSmi;
}

function packageVersion(name: string): string {
  try {
    return (JSON.parse(fs.readFileSync(require.resolve(`${name}/package.json`), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

const mean = (values: number[]) => (values.length === 0 ? 0 : values.reduce((a, b) => a + b, 0) / values.length);

function percentile(values: number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function parseAtLeast(flag: string, min: number): (value: string) => number {
  const integer = parseInteger(flag);
  return (value) => {
    const parsed = integer(value);
    if (parsed < min) throw new Error(`${flag} must be at least ${min}, got ${parsed}`);
    return parsed;
  };
}

function parseList(value: string): number[] {
  const sizes = value.split(',').map((part) => Number(part.trim()));
  if (sizes.length === 0 || sizes.some((size) => !Number.isInteger(size) || size < 1)) {
    throw new Error(`--batch must be a comma-separated list of positive integers, got "${value}"`);
  }
  return sizes;
}

function parseKv(value: string): 'auto' | 'host' | 'device' | 'device-merge' {
  if (value !== 'auto' && value !== 'host' && value !== 'device' && value !== 'device-merge') {
    throw new Error(`--kv must be auto, host, device or device-merge, got "${value}"`);
  }
  return value;
}

function parseSwitch(flag: string): (value: string) => SwitchChoice {
  return (value) => {
    if (!(SWITCH_CHOICES as readonly string[]).includes(value)) throw new Error(`${flag} must be ${SWITCH_CHOICES.join(', ')}, got "${value}"`);
    return value as SwitchChoice;
  };
}

function parseCacheMode(value: string): 'disabled' | 'lazyRelease' | 'simple' | 'bucket' {
  if (!['disabled', 'lazyRelease', 'simple', 'bucket'].includes(value)) {
    throw new Error(`--webgpu-cache-mode must be disabled, lazyRelease, simple or bucket, got "${value}"`);
  }
  return value as 'disabled' | 'lazyRelease' | 'simple' | 'bucket';
}

function parseMixedAdmission(value: string): 'both' | 'continuous' {
  if (value !== 'both' && value !== 'continuous') throw new Error(`--mixed-admission must be both or continuous, got "${value}"`);
  return value;
}
