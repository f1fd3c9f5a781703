import * as fs from 'node:fs';
import * as path from 'node:path';
import { SingleBar } from 'cli-progress';
import type { Command } from 'commander';
import { isFinalStatus, type BatchStatus } from '@app/contracts';
import { readServerConfig, type ServerConfig } from '../config/server.config';

// `falconq batch submit|estimate|status|watch|results|cancel`: a running falconq's OpenAI batch routes from the terminal.

interface ServerFlags {
  url?: string;
  key?: string;
  json?: boolean;
}

interface BatchView {
  id: string;
  status: BatchStatus;
  endpoint: string;
  request_counts: { total: number; completed: number; failed: number };
  output_file_id: string | null;
  error_file_id: string | null;
  errors: { data: { line: number | null; param: string | null; message: string }[] } | null;
  created_at: number;
}

class Server {
  constructor(private readonly config: ServerConfig) {}

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    return { ...(this.config.key ? { Authorization: `Bearer ${this.config.key}` } : {}), ...extra };
  }

  async request(method: string, route: string, body?: string | FormData, contentType?: string): Promise<Response> {
    let response: Response;
    try {
      response = await fetch(`${this.config.url}${route}`, { method, body, headers: this.headers(contentType ? { 'Content-Type': contentType } : {}) });
    } catch (error) {
      throw new Error(`cannot reach falconq at ${this.config.url} (${(error as Error).cause instanceof Error ? ((error as Error).cause as Error).message : (error as Error).message}); is it running? (--url, FALCONQ_URL)`);
    }
    if (!response.ok) {
      const text = await response.text();
      let message = text;
      try {
        message = (JSON.parse(text) as { error?: { message?: string } }).error?.message ?? text;
      } catch {
        // not JSON: the text itself
      }
      const hint = response.status === 401 ? ' (pass --key or set FALCONQ_KEY)' : '';
      throw new Error(`${method} ${route}: ${response.status} ${message}${hint}`);
    }
    return response;
  }

  async json<T>(method: string, route: string, body?: unknown): Promise<T> {
    const response = await this.request(method, route, body === undefined ? undefined : JSON.stringify(body), body === undefined ? undefined : 'application/json');
    return (await response.json()) as T;
  }
}

const serverOptions = (command: Command): Command => command
  .option('--url <url>', 'falconq api (env FALCONQ_URL; default http://127.0.0.1:3000)')
  .option('--key <key>', 'API key (env FALCONQ_KEY)')
  .option('--json', 'print the batch object as JSON');

function describe(batch: BatchView): string {
  const { total, completed, failed } = batch.request_counts;
  const problems = batch.errors?.data.slice(0, 5).map((e) => `\n  line ${e.line ?? '-'}${e.param ? `, ${e.param}` : ''}: ${e.message}`).join('') ?? '';
  return `${batch.id}  ${batch.status}  ${completed} succeeded, ${failed} failed, ${total - completed - failed} to go, of ${total}${problems}`;
}

function print(batch: BatchView, flags: ServerFlags): void {
  process.stdout.write(flags.json ? `${JSON.stringify(batch, null, 2)}\n` : `${describe(batch)}\n`);
}

/** The endpoint every line of the file names (the batch's endpoint). */
function endpointOf(file: string, content: string): string {
  const first = content.split('\n').find((line) => line.trim() !== '');
  if (!first) throw new Error(`${file} has no requests`);
  try {
    const url = (JSON.parse(first) as { url?: unknown }).url;
    if (typeof url === 'string') return url;
  } catch {
    // the api names the bad line
  }
  throw new Error(`${file} line 1 names no "url": pass --endpoint`);
}

async function upload(server: Server, file: string, content: string): Promise<{ id: string }> {
  const form = new FormData();
  form.append('purpose', 'batch');
  form.append('file', new Blob([content], { type: 'application/jsonl' }), path.basename(file));
  return (await (await server.request('POST', '/v1/files', form)).json()) as { id: string };
}

interface DryRunView {
  valid: boolean;
  request_counts: { total: number; valid: number; invalid: number };
  errors: { total: number; data: { code: string; line: number; param: string | null; message: string }[] };
  lines_over_context: number[];
  usage: { input_tokens: number; max_output_tokens: number };
  estimate: { workers: number; tokens_per_second: number | null; max_seconds: number | null; basis: string };
}

/** The api's dry run of a file (every line checked, an estimate, no batch); the uploaded copy is deleted after. */
async function estimate(server: Server, file: string, flags: { endpoint?: string }): Promise<DryRunView> {
  if (!fs.existsSync(file)) throw new Error(`${file}: no such file`);
  const content = fs.readFileSync(file, 'utf8');
  const endpoint = flags.endpoint ?? endpointOf(file, content);
  const uploaded = await upload(server, file, content);
  try {
    return await server.json<DryRunView>('POST', '/v1/batches', { input_file_id: uploaded.id, endpoint, completion_window: '24h', dry_run: true });
  } finally {
    await server.request('DELETE', `/v1/files/${uploaded.id}`).catch(() => undefined);
  }
}

function describeEstimate(file: string, dry: DryRunView): string {
  const { total, valid, invalid } = dry.request_counts;
  const lines = [`${file}: ${total} requests, ${valid} valid, ${invalid} invalid`];
  for (const problem of dry.errors.data.slice(0, 10)) lines.push(`  line ${problem.line}${problem.param ? `, ${problem.param}` : ''}: ${problem.message} (${problem.code})`);
  if (dry.errors.total > 10) lines.push(`  … and ${dry.errors.total - 10} more (--json lists up to 1000)`);
  if (dry.lines_over_context.length > 0) lines.push(`lines over the context: ${dry.lines_over_context.slice(0, 20).join(', ')}${dry.lines_over_context.length > 20 ? ', …' : ''}`);
  lines.push(`${dry.usage.input_tokens} prompt tokens; at most ${dry.usage.max_output_tokens} tokens to generate`);
  const { max_seconds: seconds, tokens_per_second: rate, workers } = dry.estimate;
  lines.push(seconds === null ? `time: unknown (${dry.estimate.basis})` : `time: at most ${seconds.toFixed(1)} s at ${rate!.toFixed(1)} tokens/s (${workers} worker${workers === 1 ? '' : 's'}; requests that stop early take less)`);
  return `${lines.join('\n')}\n`;
}

async function submit(server: Server, file: string, flags: ServerFlags & { endpoint?: string; completionWindow: string; metadata: string[] }): Promise<BatchView> {
  if (!fs.existsSync(file)) throw new Error(`${file}: no such file`);
  const content = fs.readFileSync(file, 'utf8');
  const endpoint = flags.endpoint ?? endpointOf(file, content);
  const metadata = Object.fromEntries(flags.metadata.map((pair) => {
    const at = pair.indexOf('=');
    if (at <= 0) throw new Error(`--metadata must be key=value, got "${pair}"`);
    return [pair.slice(0, at), pair.slice(at + 1)];
  }));
  const uploaded = await upload(server, file, content);
  const batch = await server.json<BatchView>('POST', '/v1/batches', {
    input_file_id: uploaded.id, endpoint, completion_window: flags.completionWindow, ...(flags.metadata.length > 0 ? { metadata } : {}),
  });
  return batch;
}

/** Follows the batch's event stream with a progress bar until its final status; returns that batch. */
async function watch(server: Server, id: string): Promise<BatchView> {
  let batch = await server.json<BatchView>('GET', `/v1/batches/${id}`);
  const bar = new SingleBar({
    format: `${id} [{bar}] {percentage}% | {value}/{total} | {failed} failed | {tps} tok/s | ETA {eta}`,
    noTTYOutput: true, notTTYSchedule: 2000, hideCursor: true, stream: process.stderr,
  });
  const counts = batch.request_counts;
  bar.start(counts.total, counts.completed + counts.failed, { failed: counts.failed, tps: '0.0', eta: '-' });
  try {
    while (!isFinalStatus(batch.status)) {
      const response = await server.request('GET', `/batches/${id}/events`);
      const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        const events = buffer.split('\n\n');
        buffer = events.pop() ?? '';
        for (const raw of events) {
          const data = raw.split('\n').find((line) => line.startsWith('data: '));
          if (!data) continue;
          const event = JSON.parse(data.slice(6)) as { type: string; counts?: BatchView['request_counts']; tokensPerSecond?: number; etaSeconds?: number | null };
          if (!event.counts) continue;
          const eta = event.etaSeconds === null || event.etaSeconds === undefined ? '-' : `${Math.ceil(event.etaSeconds)}s`;
          bar.update(event.counts.completed + event.counts.failed, {
            failed: event.counts.failed, ...(event.tokensPerSecond !== undefined ? { tps: event.tokensPerSecond.toFixed(1), eta } : {}),
          });
        }
      }
      // The stream ends at the final status, or when the connection is cut: read the state, go on if not final.
      batch = await server.json<BatchView>('GET', `/v1/batches/${id}`);
    }
    const done = batch.request_counts;
    bar.update(done.completed + done.failed, { failed: done.failed, eta: '0s' });
  } finally {
    bar.stop();
  }
  return batch;
}

async function download(server: Server, fileId: string, to: string | undefined): Promise<number> {
  const text = await (await server.request('GET', `/v1/files/${fileId}/content`)).text();
  if (to) fs.writeFileSync(to, text);
  else process.stdout.write(text);
  return text.split('\n').filter((line) => line.trim() !== '').length;
}

export function registerBatchCommands(program: Command): void {
  const batch = program.command('batch').description('Submit and follow batches on a running falconq (--url, --key)');

  serverOptions(batch.command('submit')
    .description('Upload an OpenAI batch input file (JSONL) and create a batch; prints its id and state')
    .argument('<file>', 'JSONL: {"custom_id", "method": "POST", "url", "body"} per line'))
    .option('--endpoint <path>', '/v1/completions or /v1/chat/completions (default: the first line\'s url)')
    .option('--completion-window <window>', 'completion window', '24h')
    .option('--metadata <key=value>', 'batch metadata (repeatable)', (value: string, all: string[]) => [...all, value], [])
    .option('--watch', 'then follow it as `batch watch` does')
    .action(async (file: string, flags: ServerFlags & { endpoint?: string; completionWindow: string; metadata: string[]; watch?: boolean }) => {
      const server = new Server(readServerConfig(flags));
      const created = await submit(server, file, flags);
      print(created, flags);
      if (!flags.watch) return;
      const final = await watch(server, created.id);
      print(final, flags);
      if (final.status !== 'completed') process.exitCode = 1;
    });

  serverOptions(batch.command('estimate')
    .description('Check every line of a batch input file and estimate its work and time on the running falconq (a dry run: no batch is created; exit 1 if a line is invalid)')
    .argument('[file]', 'JSONL input (or -i)'))
    .option('-i, --input <file>', 'JSONL input')
    .option('--endpoint <path>', '/v1/completions or /v1/chat/completions (default: the first line\'s url)')
    .action(async (positional: string | undefined, flags: ServerFlags & { input?: string; endpoint?: string }) => {
      const file = flags.input ?? positional;
      if (!file) throw new Error('name the input file: falconq batch estimate -i requests.jsonl');
      const dry = await estimate(new Server(readServerConfig(flags)), file, flags);
      process.stdout.write(flags.json ? `${JSON.stringify(dry, null, 2)}\n` : describeEstimate(file, dry));
      if (!dry.valid) process.exitCode = 1;
    });

  serverOptions(batch.command('status').description('Print a batch\'s state and counts').argument('<id>', 'batch id'))
    .action(async (id: string, flags: ServerFlags) => {
      print(await new Server(readServerConfig(flags)).json<BatchView>('GET', `/v1/batches/${id}`), flags);
    });

  serverOptions(batch.command('watch').description('Follow a batch with a progress bar (tokens/s, ETA) until it ends; exit 1 unless it completed').argument('<id>', 'batch id'))
    .action(async (id: string, flags: ServerFlags) => {
      const final = await watch(new Server(readServerConfig(flags)), id);
      print(final, flags);
      if (final.status !== 'completed') process.exitCode = 1;
    });

  serverOptions(batch.command('results').description('Write a finished batch\'s output file (and error file) lines').argument('<id>', 'batch id'))
    .option('-o, --output <file>', 'write the output lines here (default: stdout)')
    .option('--errors <file>', 'write the error file lines here')
    .action(async (id: string, flags: ServerFlags & { output?: string; errors?: string }) => {
      const server = new Server(readServerConfig(flags));
      const state = await server.json<BatchView>('GET', `/v1/batches/${id}`);
      if (!isFinalStatus(state.status)) throw new Error(`${id} is ${state.status}: its output file is written when it ends (falconq batch watch ${id})`);
      const written = state.output_file_id ? await download(server, state.output_file_id, flags.output) : 0;
      const failed = state.error_file_id && flags.errors ? await download(server, state.error_file_id, flags.errors) : 0;
      if (flags.output || flags.errors) process.stderr.write(`${written} output lines${flags.output ? ` in ${flags.output}` : ''}${flags.errors ? `, ${failed} error lines in ${flags.errors}` : ''}\n`);
      if (state.error_file_id && !flags.errors) process.stderr.write(`${state.request_counts.failed} requests failed: --errors <file> writes their lines\n`);
    });

  serverOptions(batch.command('cancel').description('Cancel a batch (running requests stop, waiting ones are dropped)').argument('<id>', 'batch id'))
    .action(async (id: string, flags: ServerFlags) => {
      print(await new Server(readServerConfig(flags)).json<BatchView>('POST', `/v1/batches/${id}/cancel`), flags);
    });
}
