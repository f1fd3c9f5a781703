import * as fs from 'node:fs';
import * as readline from 'node:readline';
import { SingleBar } from 'cli-progress';
import type { Command } from 'commander';
import type { ItemResult } from '@app/contracts';
import { GenerationEngine, Tokenizer, type GenerationResult } from '@app/engine';
import { readManifest, type ExecutionProviderName } from '@app/model';
import { checkBatchLine, servedNames, type PromptModel } from '@app/requests';
import { completionBody, requestIdOf, type BatchEndpoint, type BatchItemInput } from '@app/store';
import { OrderedOutput } from '../run-batch/ordered-output';
import { readResumePoint, type ResumePoint } from '../run-batch/resume';
import { parseInteger, parseProvider } from './generate';

// `falconq run-batch`: an OpenAI batch input file run by the engine in this process (no Redis, no api). Output lines
// are the api's output-file lines, in input order, written as they finish; --resume continues a killed run.

interface RunBatchFlags {
  input: string;
  output: string;
  errors?: string;
  resume?: boolean;
  model: string;
  ep: ExecutionProviderName;
  deviceId?: number;
  slots: number;
  fallbackCpu?: boolean;
}

/** The request ids of run-batch lines: the api's shape, for a batch named "local". */
const RUN_ID = 'local';

export function registerRunBatchCommand(program: Command): void {
  program
    .command('run-batch')
    .description('Run an OpenAI batch input file (JSONL) with the engine here, no server: results in input order, written as they finish; --resume continues an interrupted run')
    .requiredOption('-i, --input <file>', 'input JSONL: {"custom_id", "method": "POST", "url": "/v1/completions" or "/v1/chat/completions", "body"} per line (- = stdin)')
    .requiredOption('-o, --output <file>', 'output JSONL (the api\'s output file lines)')
    .option('--errors <file>', 'failed lines go here (default: into the output file, with "error" set)')
    .option('--resume', 'continue into existing output files: skip the requests they hold, run the rest')
    .requiredOption('--model <dir>', 'converted model directory (falconq.json)')
    .option('--ep <provider>', 'execution provider: cpu, webgpu or cuda', parseProvider, 'cpu')
    .option('--device-id <n>', 'GPU index (cuda)', parseInteger('--device-id'))
    .option('--slots <n>', 'sequences decoded together', parseInteger('--slots'), 16)
    .option('--fallback-cpu', 'use the cpu provider when the requested one cannot load')
    .action(async (flags: RunBatchFlags) => {
      process.exitCode = await runBatch(flags);
    });
}

function startPoint(flags: RunBatchFlags): ResumePoint {
  if (flags.resume) return readResumePoint(flags.output, flags.errors);
  for (const [flag, file] of [['--output', flags.output], ['--errors', flags.errors]] as const) {
    if (file && fs.existsSync(file) && fs.statSync(file).size > 0) {
      throw new Error(`${flag} ${file} already holds results: pass --resume to continue that run, or remove the file`);
    }
  }
  return { done: 0, customIds: [] };
}

async function countRequests(path: string): Promise<number | null> {
  if (path === '-') return null;
  let count = 0;
  for await (const line of readline.createInterface({ input: fs.createReadStream(path), crlfDelay: Infinity })) {
    if (line.trim() !== '') count++;
  }
  return count;
}

/** The model as request checks see it: the names a line's `model` may use, the tokenizer, the context. */
function promptModel(dir: string): PromptModel {
  const manifest = readManifest(dir);
  const tokenizer = Tokenizer.fromModelDir(dir);
  return {
    names: servedNames(manifest.source?.id ?? 'falconq', manifest.source?.id),
    contextLength: manifest.shape.contextLength,
    vocabSize: manifest.shape.vocabSize,
    countTokens: (text) => tokenizer.encode(text).length,
    encode: (text) => tokenizer.encode(text),
    decode: (ids) => tokenizer.decode(ids, { skipSpecialTokens: false }),
    renderChat: (messages) => tokenizer.applyChatTemplate(messages),
  };
}

interface RunnableLine {
  item: BatchItemInput;
  endpoint: BatchEndpoint;
}

function succeededLine(index: number, { item, endpoint }: RunnableLine, result: GenerationResult, modelName: string): string {
  const id = requestIdOf(RUN_ID, index);
  const result_: ItemResult = {
    batchId: RUN_ID,
    index,
    customId: item.customId,
    status: 'succeeded',
    output: {
      sequences: result.sequences.map((s) => ({
        text: s.text, finishReason: s.finishReason, tokens: s.tokens.length,
        ...(s.logprobs ? { logprobs: s.logprobs } : {}),
        ...(s.promptLogprobs ? { promptLogprobs: s.promptLogprobs } : {}),
      })),
      promptTokens: result.promptTokens,
      completionTokens: result.sequences.reduce((sum, s) => sum + s.tokens.length, 0),
      timeToFirstTokenMs: result.timeToFirstTokenMs,
      generationMs: result.totalMs,
    },
    attempts: 1,
    finishedAt: Date.now(),
  };
  return JSON.stringify({ id, custom_id: item.customId, response: { status_code: 200, request_id: id, body: completionBody(endpoint, modelName, id, result_) }, error: null });
}

function errorLine(index: number, customId: string | null, code: string, message: string): string {
  return JSON.stringify({ id: requestIdOf(RUN_ID, index), custom_id: customId, response: null, error: { code, message } });
}

function customIdOf(text: string): string | null {
  try {
    const parsed = JSON.parse(text) as { custom_id?: unknown };
    return typeof parsed.custom_id === 'string' ? parsed.custom_id : null;
  } catch {
    return null;
  }
}

class Progress {
  private readonly bar: SingleBar;
  private readonly started = Date.now();
  private tokens = 0;

  constructor(total: number | null, done: number) {
    this.bar = new SingleBar({
      format: total === null
        ? 'run-batch {value} requests | {tps} tok/s'
        : 'run-batch [{bar}] {percentage}% | {value}/{total} requests | {tps} tok/s | ETA {eta_formatted}',
      noTTYOutput: true,
      notTTYSchedule: 2000,
      hideCursor: true,
      etaBuffer: 50,
      stream: process.stderr,
    });
    this.bar.start(total ?? 0, done, { tps: '0.0' });
  }

  update(done: number, generatedTokens = 0): void {
    this.tokens += generatedTokens;
    const seconds = Math.max((Date.now() - this.started) / 1000, 1e-3);
    this.bar.update(done, { tps: (this.tokens / seconds).toFixed(1) });
  }

  stop(): void {
    this.bar.stop();
  }
}

async function runBatch(flags: RunBatchFlags): Promise<number> {
  if (flags.input !== '-' && !fs.existsSync(flags.input)) throw new Error(`--input ${flags.input}: no such file`);
  if (flags.slots < 1) throw new Error(`--slots must be at least 1, got ${flags.slots}`);
  const resume = startPoint(flags);
  const model = promptModel(flags.model);
  const name = model.names[0];
  const total = await countRequests(flags.input);
  if (total !== null && resume.done > total) throw new Error(`--resume: the output holds ${resume.done} results but ${flags.input} has ${total} requests: not the same input`);
  const engine = await GenerationEngine.start({
    modelDir: flags.model, executionProvider: flags.ep, deviceId: flags.deviceId, slots: flags.slots, fallbackToCpu: flags.fallbackCpu,
    onWarning: (warning) => process.stderr.write(`falconq: warning: ${warning}\n`),
  });
  const output = new OrderedOutput(flags.output, flags.errors, resume.done);
  const progress = new Progress(total, resume.done);
  const window = flags.slots * 2;
  const inFlight = new Set<Promise<void>>();
  const seen = new Map<string, number>();
  let failed = 0;
  try {
    const input = flags.input === '-' ? process.stdin : fs.createReadStream(flags.input);
    let lineNumber = 0;
    let index = 0;
    for await (const raw of readline.createInterface({ input, crlfDelay: Infinity })) {
      lineNumber++;
      const text = raw.trim();
      if (text === '') continue;
      const at = index++;
      if (at < resume.done) {
        const customId = customIdOf(text);
        if (customId !== resume.customIds[at]) {
          throw new Error(`--resume: line ${lineNumber} has custom_id ${JSON.stringify(customId)} but the output holds ${JSON.stringify(resume.customIds[at])} for it: not the same input`);
        }
        if (customId !== null && !seen.has(customId)) seen.set(customId, lineNumber);
        continue;
      }
      const checked = checkBatchLine(text, lineNumber, null, model, seen, at);
      if ('code' in checked) {
        failed++;
        const message = `line ${checked.line}${checked.param ? `, ${checked.param}` : ''}: ${checked.message}`;
        output.put(at, { file: 'errors', text: errorLine(at, customIdOf(text), checked.code, message) });
        progress.update(output.written);
        continue;
      }
      while (inFlight.size + output.held >= window) await Promise.race(inFlight);
      const { item } = checked;
      const run = engine.submit({ id: `line-${lineNumber}`, prompt: item.prompt, promptIds: item.promptIds, params: item.params }).then(
        (result) => {
          output.put(at, { file: 'output', text: succeededLine(at, checked, result, name) });
          progress.update(output.written, result.sequences.reduce((sum, s) => sum + s.tokens.length, 0));
        },
        (error: unknown) => {
          failed++;
          output.put(at, { file: 'errors', text: errorLine(at, item.customId, 'generation_failed', error instanceof Error ? error.message : String(error)) });
          progress.update(output.written);
        },
      );
      inFlight.add(run);
      void run.finally(() => inFlight.delete(run));
    }
    await Promise.all(inFlight);
  } finally {
    progress.stop();
    output.close();
    await engine.close();
  }
  process.stderr.write(`run-batch: ${output.written} requests written to ${flags.output}${flags.errors ? ` and ${flags.errors}` : ''}; ${failed} failed in this run\n`);
  return failed > 0 ? 1 : 0;
}
