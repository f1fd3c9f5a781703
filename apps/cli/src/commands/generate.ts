import type { Command } from 'commander';
import {
  type EngineOptions,
  EXECUTION_PROVIDER_CHOICES,
  type ExecutionProviderChoice,
  GenerationEngine,
  type GenerationParams,
  type GenerationResult,
  InvalidGenerationParamError,
  resolveGenerationParams,
} from '@app/engine';
import type { ExecutionProviderName } from '@app/model';
import { flagError, withFlagNames } from './flag-names';
import { collectPrompts } from './prompt-input';

interface GenerateFlags {
  model: string;
  ep: ExecutionProviderName;
  deviceId?: number;
  slots: number;
  decodeChunk?: number;
  maxNewTokens?: number;
  greedy?: boolean;
  sample?: boolean;
  temperature?: number;
  topK?: number;
  topP?: number;
  repetitionPenalty?: number;
  seed?: number;
  stop: string[];
  numReturnSequences?: number;
  ignoreEos?: boolean;
  fullText?: boolean;
  truncate?: boolean;
  json?: boolean;
  fallbackCpu?: boolean;
  inProcess?: boolean;
  file?: string;
}

export function registerGenerateCommand(program: Command): void {
  program
    .command('generate')
    .description('Generate text for one or more prompts with the engine (tokens stream as they come; --json: one line per prompt)')
    .argument('[prompt...]', 'prompts (each argument is one prompt); none: --file, or stdin when it is not a terminal')
    .option('--file <path>', 'prompts, one per line (- = stdin); a line starting with " or { is JSON: a string or {"prompt": ...}')
    .requiredOption('--model <dir>', 'converted model directory (falconq.json)')
    .option('--ep <provider>', 'execution provider: cpu, webgpu, cuda, or auto (cuda where it loads, else webgpu, else cpu)', parseProvider, 'cpu')
    .option('--device-id <n>', 'GPU index (cuda)', parseInteger('--device-id'))
    .option('--slots <n>', 'sequences decoded together', parseInteger('--slots'), 8)
    .option('--decode-chunk <n>', 'the longest decode-loop run in steps (default: 128 on cuda, else 1; what generate streams runs 32 at a time)', parseInteger('--decode-chunk'))
    .option('--max-new-tokens <n>', 'tokens to generate at most (default 256)', parseInteger('--max-new-tokens'))
    .option('--greedy', 'greedy decoding (the default unless a sampling option is given)')
    .option('--sample', 'sample (implied by --temperature, --top-k, --top-p)')
    .option('--temperature <t>', 'sampling temperature', parseNumber('--temperature'))
    .option('--top-k <k>', 'sample among the k most likely tokens', parseInteger('--top-k'))
    .option('--top-p <p>', 'nucleus sampling mass', parseNumber('--top-p'))
    .option('--repetition-penalty <r>', 'penalty for tokens already seen (1 = off)', parseNumber('--repetition-penalty'))
    .option('--seed <n>', 'sampling seed (same seed, same text)', parseInteger('--seed'))
    .option('--stop <text>', 'stop string (repeatable, up to 4; \\n and \\t are unescaped)', (value: string, all: string[]) => [...all, unescape(value)], [])
    .option('--num-return-sequences <n>', 'sequences per prompt (needs sampling)', parseInteger('--num-return-sequences'))
    .option('--ignore-eos', 'keep generating after the end-of-text token')
    .option('--full-text', 'print the prompt followed by the generated text')
    .option('--truncate', "keep the prompt's last tokens when prompt + max-new-tokens exceed the context")
    .option('--json', 'one JSON object per prompt per line: {"prompt","text","tokens","finish_reason"}')
    .option('--fallback-cpu', 'use the cpu provider when the requested one cannot load')
    .option('--in-process', 'run the engine in this thread instead of a worker_thread')
    .action(async (args: string[], flags: GenerateFlags) => {
      const prompts = await collectPrompts(args, flags.file);
      await generate(prompts, flags);
    });
}

export function paramsFromFlags(flags: GenerateFlags): Partial<GenerationParams> {
  const params: Partial<GenerationParams> = {};
  const wantsSampling = flags.sample || flags.temperature !== undefined || flags.topK !== undefined || flags.topP !== undefined;
  if (flags.greedy && flags.sample) throw new Error('--greedy and --sample exclude each other');
  params.doSample = Boolean(wantsSampling && !flags.greedy);
  if (flags.maxNewTokens !== undefined) params.maxNewTokens = flags.maxNewTokens;
  if (flags.temperature !== undefined) params.temperature = flags.temperature;
  if (flags.topK !== undefined) params.topK = flags.topK;
  if (flags.topP !== undefined) params.topP = flags.topP;
  if (flags.repetitionPenalty !== undefined) params.repetitionPenalty = flags.repetitionPenalty;
  if (flags.seed !== undefined) params.seed = flags.seed;
  if (flags.stop.length > 0) params.stop = flags.stop;
  if (flags.numReturnSequences !== undefined) params.numReturnSequences = flags.numReturnSequences;
  if (flags.ignoreEos) params.ignoreEos = true;
  if (flags.fullText) params.returnFullText = true;
  if (flags.truncate) params.truncate = true;
  withFlagNames(() => resolveGenerationParams(params)); // refuse bad flags before the model loads
  return params;
}

async function generate(prompts: string[], flags: GenerateFlags): Promise<void> {
  const params = paramsFromFlags(flags);
  const options: EngineOptions = {
    modelDir: flags.model,
    executionProvider: flags.ep,
    deviceId: flags.deviceId,
    slots: flags.slots,
    decodeChunkSteps: flags.decodeChunk,
    fallbackToCpu: flags.fallbackCpu,
    inProcess: flags.inProcess,
    onWarning: (warning) => process.stderr.write(`falconq: warning: ${warning}\n`),
  };
  const engine = await GenerationEngine.start(options);
  try {
    if (flags.json) await generateJsonLines(engine, prompts, params);
    else await generateStreaming(engine, prompts, params);
  } finally {
    await engine.close();
  }
}

/** All prompts go to the engine at once (batched); lines come out in prompt order. */
async function generateJsonLines(engine: GenerationEngine, prompts: string[], params: Partial<GenerationParams>): Promise<void> {
  const runs = prompts.map((prompt, index) =>
    engine.submit({ id: `prompt-${index}`, prompt, params }).then(
      (result) => ({ prompt, result }),
      (error: unknown) => ({ prompt, error: error instanceof Error ? error : new Error(String(error)) }),
    ),
  );
  let failed = false;
  for (const run of runs) {
    const outcome = await run;
    if ('error' in outcome) {
      failed = true;
      const { error } = outcome;
      const described = error instanceof InvalidGenerationParamError ? { message: flagError(error).message, field: error.field } : { message: error.message };
      process.stdout.write(`${JSON.stringify({ prompt: outcome.prompt, error: described })}\n`);
    } else {
      process.stdout.write(`${JSON.stringify(jsonLine(outcome.prompt, outcome.result))}\n`);
    }
  }
  if (failed) process.exitCode = 1;
}

export function jsonLine(prompt: string, result: GenerationResult): Record<string, unknown> {
  const [first] = result.sequences;
  const line: Record<string, unknown> = { prompt, text: first.text, tokens: first.tokens, finish_reason: first.finishReason };
  if (result.sequences.length > 1) {
    line.sequences = result.sequences.map((sequence) => ({ text: sequence.text, tokens: sequence.tokens, finish_reason: sequence.finishReason }));
  }
  return line;
}

/** One prompt after the other, each streamed to the terminal as its tokens come. */
async function generateStreaming(engine: GenerationEngine, prompts: string[], params: Partial<GenerationParams>): Promise<void> {
  const separate = prompts.length > 1 || (params.numReturnSequences ?? 1) > 1;
  for (const [index, prompt] of prompts.entries()) {
    if (separate) process.stdout.write(`${index > 0 ? '\n' : ''}--- prompt ${index + 1}: ${JSON.stringify(prompt)}\n`);
    const streamed = 0; // the first sequence streams; extra ones are printed whole at the end
    if (params.returnFullText) process.stdout.write(prompt);
    const result = await engine.submit({ id: `prompt-${index}`, prompt, params: { ...params, returnFullText: false }, interactive: true }, (event) => {
      if (event.sequence === streamed) process.stdout.write(event.text);
    }).catch((error: unknown) => {
      throw error instanceof InvalidGenerationParamError ? flagError(error) : error;
    });
    process.stdout.write(`\n[${result.sequences[0].finishReason}, ${result.sequences[0].tokens.length} tokens, first token after ${result.timeToFirstTokenMs.toFixed(0)} ms]\n`);
    for (const [n, sequence] of result.sequences.entries()) {
      if (n === streamed) continue;
      process.stdout.write(`--- sequence ${n + 1}\n${sequence.text}\n[${sequence.finishReason}, ${sequence.tokens.length} tokens]\n`);
    }
  }
}

function unescape(value: string): string {
  return value.replace(/\\n/g, '\n').replace(/\\t/g, '\t');
}

export function parseProvider(value: string): ExecutionProviderChoice {
  if (!(EXECUTION_PROVIDER_CHOICES as readonly string[]).includes(value)) throw new Error(`--ep must be one of ${EXECUTION_PROVIDER_CHOICES.join(', ')}, got "${value}"`);
  return value as ExecutionProviderChoice;
}

export function parseInteger(flag: string): (value: string) => number {
  return (value) => {
    const parsed = Number(value);
    if (!Number.isInteger(parsed)) throw new Error(`${flag} must be an integer, got "${value}"`);
    return parsed;
  };
}

export function parseNumber(flag: string): (value: string) => number {
  return (value) => {
    const parsed = Number(value);
    if (value.trim() === '' || !Number.isFinite(parsed)) throw new Error(`${flag} must be a number, got "${value}"`);
    return parsed;
  };
}
