import * as path from 'node:path';
import { MultiBar, type SingleBar } from 'cli-progress';
import { type Command, InvalidArgumentError, Option } from 'commander';
import {
  convertModel, type ConvertResult, createRandomModel, createTinyModel, type GraphTuning, inspectModel, type ModelTarget,
  parseGraphTuning, RANDOM_SHAPES, readManifest, verifyModelDirectory, type WeightDType,
} from '@app/model';
import { readHubConfig } from '../config/hub.config';

/** Draws one progress bar per stage reported by libs/model (bytes for weights and downloads). */
export class StageProgress {
  private readonly bars = new Map<string, SingleBar>();
  private readonly multibar: MultiBar;

  constructor(stream: NodeJS.WriteStream = process.stderr) {
    this.multibar = new MultiBar({
      format: '{stage} [{bar}] {percentage}% | {doneText} / {totalText}',
      noTTYOutput: true,
      notTTYSchedule: 5000,
      hideCursor: true,
      clearOnComplete: false,
      stream,
    });
  }

  readonly onProgress = (stage: string, done: number, total: number): void => {
    const texts = { stage: stage.padEnd(24), doneText: formatAmount(stage, done), totalText: formatAmount(stage, total) };
    let bar = this.bars.get(stage);
    if (!bar) {
      bar = this.multibar.create(Math.max(total, 1), done, texts);
      this.bars.set(stage, bar);
    }
    bar.setTotal(Math.max(total, 1));
    bar.update(done, texts);
  };

  stop(): void {
    this.multibar.stop();
  }
}

function formatAmount(stage: string, value: number): string {
  return stage === 'weights' || stage.startsWith('download') ? formatBytes(value) : String(value);
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(unit === 0 ? 0 : 2)} ${units[unit]}`;
}

const integer = (name: string, min: number) => (value: string): number => {
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < min) throw new InvalidArgumentError(`${name} must be an integer >= ${min}`);
  return parsed;
};

const targetOption = () => new Option('--target <target>', 'cpu (fp32 activations) or gpu (fp16 activations)').choices(['cpu', 'gpu']).default('cpu');
const accuracyLevelOption = () => new Option('--accuracy-level <n>', 'MatMulNBits accuracy_level: 4 = int8 activations (default), 0 = exact on the dequantized weights')
  .choices(['0', '1', '2', '3', '4']).default(4).argParser((value: string) => {
    if (!['0', '1', '2', '3', '4'].includes(value)) throw new InvalidArgumentError('--accuracy-level must be 0, 1, 2, 3 or 4');
    return Number(value) as 0 | 1 | 2 | 3 | 4;
  });
const graphTuningOption = () => new Option('--graph-tuning <list>', 'graph shape for baselines: grouped-top-k=0 builds the single 65024-wide TopK (and ArgMax in the decode loop), fuse-in=0 separate QKV and MLP-up matmuls, as earlier models; sampler-if=0 runs the full sampler at every decode-loop step, loop-views=0 keeps the fused projection and its Split in the decode loop')
  .argParser((value: string) => {
    try {
      return parseGraphTuning(value);
    } catch (error) {
      throw new InvalidArgumentError((error as Error).message);
    }
  })
  .hideHelp();
const blockSizeOption = () => new Option('--block-size <n>', 'int4 block size (power of 2, >= 16)').argParser(integer('--block-size', 16)).default(32);

/** Runs a build with progress bars; Ctrl-C aborts it, and the library removes its partial output. */
async function withProgress(run: (onProgress: StageProgress['onProgress'], signal: AbortSignal) => Promise<ConvertResult>): Promise<void> {
  const progress = new StageProgress();
  const abort = new AbortController();
  const onInterrupt = () => abort.abort(new Error('interrupted; no model directory was written (downloads resume on the next run)'));
  process.once('SIGINT', onInterrupt);
  process.once('SIGTERM', onInterrupt);
  let result: ConvertResult;
  try {
    result = await run(progress.onProgress, abort.signal);
  } finally {
    process.off('SIGINT', onInterrupt);
    process.off('SIGTERM', onInterrupt);
    progress.stop();
  }
  const { manifest } = result;
  process.stdout.write(
    `${result.dir}\n` +
      `  ${manifest.shape.numLayers} layers, hidden ${manifest.shape.hiddenSize}, vocab ${manifest.shape.vocabSize}; ` +
      `weights ${manifest.weights.dtype}, activations ${manifest.activations}, target ${manifest.target}\n` +
      `  ${formatBytes(manifest.sizeBytes)} on disk, built in ${result.seconds.toFixed(1)} s\n`,
  );
}

export function registerModelCommands(program: Command): void {
  const model = program.command('model').description('Build, convert and inspect falconq model directories');

  model
    .command('convert')
    .description('Convert a Hugging Face Falcon checkpoint (local directory or hub repo id) to a falconq ONNX model')
    .argument('<source>', 'local checkpoint directory, or hub repo id such as tiiuae/falcon-7b-instruct')
    .requiredOption('--out <dir>', 'output model directory')
    .addOption(new Option('--weights <dtype>', 'weight format').choices(['int4', 'fp16', 'fp32']).default('int4'))
    .addOption(targetOption())
    .addOption(blockSizeOption())
    .addOption(accuracyLevelOption())
    .option('--revision <rev>', 'hub revision (branch, tag or commit)', 'main')
    .addOption(graphTuningOption())
    .option('--force', 'replace an existing model directory', false)
    .action(async (source: string, options: { out: string; weights: WeightDType; target: ModelTarget; blockSize: number; accuracyLevel: 0 | 1 | 2 | 3 | 4; revision: string; graphTuning?: Partial<GraphTuning>; force: boolean }) => {
      const hub = readHubConfig();
      await withProgress((onProgress, signal) => convertModel(source, {
        out: options.out,
        weights: options.weights,
        target: options.target,
        blockSize: options.blockSize,
        accuracyLevel: options.accuracyLevel,
        tuning: options.graphTuning,
        force: options.force,
        onProgress,
        signal,
        hub: { ...hub, revision: options.revision },
      }));
    });

  model
    .command('tiny')
    .description('Build a small random Falcon with a small byte-level BPE tokenizer (tests, demos)')
    .requiredOption('--out <dir>', 'output model directory')
    .option('--seed <n>', 'random seed', integer('--seed', 0), 0)
    .addOption(new Option('--weights <dtype>', 'weight format').choices(['int4', 'fp32']).default('int4'))
    .addOption(targetOption())
    .addOption(accuracyLevelOption())
    .option('--force', 'replace an existing model directory', false)
    .action(async (options: { out: string; seed: number; weights: WeightDType; target: ModelTarget; accuracyLevel: 0 | 1 | 2 | 3 | 4; force: boolean }) => {
      await withProgress((onProgress, signal) => createTinyModel({ ...options, onProgress, signal }));
    });

  model
    .command('random')
    .description('Build a full-size Falcon-shaped int4 model with random weights (GPU benchmarks); its tokenizer is the tiny one, model ids beyond it decode to nothing')
    .requiredOption('--out <dir>', 'output model directory')
    .addOption(new Option('--shape <name>', 'model shape').choices(Object.keys(RANDOM_SHAPES)).default('falcon-7b'))
    .addOption(targetOption())
    .addOption(blockSizeOption())
    .addOption(accuracyLevelOption())
    .option('--layers <n>', 'number of layers (cut depth for quicker benchmarks)', integer('--layers', 1))
    .option('--seed <n>', 'random seed', integer('--seed', 0), 0)
    .addOption(graphTuningOption())
    .option('--force', 'replace an existing model directory', false)
    .action(async (options: { out: string; shape: string; target: ModelTarget; blockSize: number; accuracyLevel: 0 | 1 | 2 | 3 | 4; layers?: number; seed: number; graphTuning?: Partial<GraphTuning>; force: boolean }) => {
      await withProgress((onProgress, signal) => createRandomModel({ ...options, tuning: options.graphTuning, onProgress, signal }));
    });

  model
    .command('inspect')
    .description('Print a model directory\'s manifest, file sizes and graph ops')
    .argument('<dir>', 'model directory')
    .option('--json', 'print JSON', false)
    .action((dir: string, options: { json: boolean }) => {
      const inspection = inspectModel(dir);
      if (options.json) {
        process.stdout.write(`${JSON.stringify(inspection, null, 2)}\n`);
        return;
      }
      const { manifest } = inspection;
      const lines = [
        `${path.resolve(dir)}`,
        `  architecture  ${manifest.architecture} (${manifest.source.kind}: ${manifest.source.id}${manifest.source.revision ? `@${manifest.source.revision}` : ''})`,
        `  shape         ${Object.entries(manifest.shape).map(([k, v]) => `${k}=${v}`).join(' ')}`,
        `  weights       ${manifest.weights.dtype}${manifest.weights.quantization ? ` (${manifest.weights.quantization.method}, block ${manifest.weights.quantization.blockSize}, accuracy_level ${manifest.weights.quantization.accuracyLevel})` : ''}`,
        `  activations   ${manifest.activations}, kv ${manifest.kvDType}; target ${manifest.target}; providers ${manifest.executionProviders.join(', ')}`,
        `  tokens        eos ${manifest.tokens.eos}, bos ${manifest.tokens.bos}, pad ${manifest.tokens.pad}; top-k output ${manifest.io.topK}`,
        `  graph         ir ${inspection.irVersion}, opsets ${Object.entries(inspection.opsets).map(([d, v]) => `${d}:${v}`).join(' ')}, ${inspection.nodeCount} nodes, ${inspection.initializerCount} initializers`,
        '  files',
        ...inspection.files.map((f) => `    ${f.name.padEnd(24)} ${formatBytes(f.bytes).padStart(12)}`),
        '  ops',
        ...Object.entries(inspection.ops).sort((a, b) => b[1] - a[1]).map(([op, count]) => `    ${op.padEnd(40)} ${String(count).padStart(5)}`),
        `  created ${manifest.createdAt} by ${manifest.converter}`,
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
    });

  model
    .command('verify')
    .description('Check every file of a model directory against the sizes and sha256 its manifest recorded at build time')
    .argument('<dir>', 'model directory')
    .option('--json', 'print JSON', false)
    .action((dir: string, options: { json: boolean }) => {
      const report = verifyModelDirectory(dir, readManifest(dir), { hash: 'all' });
      if (options.json) {
        process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
      } else {
        const lines = report.files.map((f) => `  ${f.ok ? 'ok     ' : 'DAMAGED'} ${f.file}${f.problem ? ` ${f.problem}` : ''}`);
        if (report.legacy) lines.push('  (this model was built before checksums were recorded: only the presence of its files was checked)');
        lines.push(report.ok ? `${path.resolve(dir)}: intact` : `${path.resolve(dir)}: damaged; re-convert it (falconq model convert ... --force) or copy it again`);
        process.stdout.write(`${lines.join('\n')}\n`);
      }
      if (!report.ok) process.exitCode = 1;
    });
}
