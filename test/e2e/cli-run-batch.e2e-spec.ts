// `falconq run-batch` as a user runs it: the built CLI on the tiny model on CPU, a 1,000-line OpenAI batch file,
// killed with SIGKILL half way and resumed.
import { execFile, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { tinyModelDir } from '../support/tiny-model';

const root = path.resolve(__dirname, '../..');
const cli = path.join(root, 'bin/falconq.js');
const run = promisify(execFile);
const LINES = 1000;

interface ResultLine {
  id: string;
  custom_id: string | null;
  response: { status_code: number; body: { choices: { text?: string; message?: { content: string }; finish_reason: string }[]; usage: object } } | null;
  error: { code: string; message: string } | null;
}

/** 1,000 requests, completions and chat mixed, greedy, plus two bad lines (bad JSON, max_tokens 0). */
function inputLines(): string[] {
  const lines = Array.from({ length: LINES - 2 }, (_, i) => JSON.stringify(i % 3 === 0
    ? { custom_id: `req-${i}`, method: 'POST', url: '/v1/chat/completions', body: { model: 'falcon', messages: [{ role: 'user', content: `Question ${i}` }], max_tokens: 6, temperature: 0 } }
    : { custom_id: `req-${i}`, method: 'POST', url: '/v1/completions', body: { model: 'falcon', prompt: `Prompt number ${i}`, max_tokens: 6, temperature: 0 } }));
  lines.splice(5, 0, '{not json');
  lines.splice(700, 0, JSON.stringify({ custom_id: 'zero', method: 'POST', url: '/v1/completions', body: { model: 'falcon', prompt: 'x', max_tokens: 0 } }));
  return lines;
}

const read = (file: string): ResultLine[] =>
  fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line) as ResultLine) : [];
const countLines = (file: string) => (fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').length - 1 : 0);
const indexOf = (line: ResultLine) => Number(/_(\d+)$/.exec(line.id)![1]);
/** Everything but the creation time, which differs between runs. */
const comparable = (line: ResultLine) => ({ custom_id: line.custom_id, choices: line.response?.body.choices, usage: line.response?.body.usage, error: line.error });

async function until(condition: () => boolean, what: string, exited: () => boolean): Promise<void> {
  while (!condition()) {
    if (exited()) throw new Error(`run-batch exited before ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('falconq run-batch (built CLI, tiny model, CPU)', () => {
  let work: string;
  let model: string;
  beforeAll(async () => {
    if (!fs.existsSync(path.join(root, 'dist/apps/cli/src/main.js'))) throw new Error('dist/ is missing: run "npm run build" first (npm test does it)');
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'falconq-run-batch-'));
    model = await tinyModelDir();
    fs.writeFileSync(path.join(work, 'in.jsonl'), `${inputLines().join('\n')}\n`);
  });
  afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

  it('writes one line per request in input order, failed ones to the error file naming line and field', async () => {
    const out = path.join(work, 'reference.jsonl');
    const errors = path.join(work, 'reference-errors.jsonl');
    const failure = await run(process.execPath, [cli, 'run-batch', '-i', path.join(work, 'in.jsonl'), '-o', out, '--errors', errors, '--model', model])
      .catch((error: { code: number; stderr: string }) => error);
    expect((failure as { code: number }).code).toBe(1); // two lines failed
    const output = read(out);
    const failed = read(errors);
    expect(output).toHaveLength(LINES - 2);
    expect(output.map(indexOf)).toEqual([...Array(LINES).keys()].filter((i) => i !== 5 && i !== 700));
    expect(output.map((line) => line.custom_id)).toEqual(Array.from({ length: LINES - 2 }, (_, i) => `req-${i}`));
    for (const line of output) {
      expect(line.response?.status_code).toBe(200);
      expect(['length', 'stop']).toContain(line.response?.body.choices[0].finish_reason);
    }
    expect(failed.map((line) => [indexOf(line), line.custom_id, line.error?.code])).toEqual([[5, null, 'invalid_batch_line'], [700, 'zero', 'invalid_batch_line']]);
    expect(failed[0].error?.message).toMatch(/^line 6: not valid JSON/);
    expect(failed[1].error?.message).toBe('line 701, body.max_tokens: must be between 1 and 2047, got 0');
    await expect(run(process.execPath, [cli, 'run-batch', '-i', path.join(work, 'in.jsonl'), '-o', out, '--model', model]))
      .rejects.toThrow(/--output .* already holds results: pass --resume/);
  });

  it('resumes after a SIGKILL half way: every request once, none missing, the same lines as an uninterrupted run', async () => {
    const lines = fs.readFileSync(path.join(work, 'in.jsonl'), 'utf8').split('\n').filter(Boolean);
    const out = path.join(work, 'killed.jsonl');
    const errors = path.join(work, 'killed-errors.jsonl');
    // The first run reads from a pipe that the test feeds with 60% of the file and keeps open: it cannot finish, so
    // the kill lands mid-run whatever the machine's speed.
    const first = spawn(process.execPath, [cli, 'run-batch', '-i', '-', '-o', out, '--errors', errors, '--model', model], { stdio: ['pipe', 'ignore', 'pipe'] });
    let exited = false;
    first.once('exit', () => (exited = true));
    first.stdin.write(`${lines.slice(0, 600).join('\n')}\n`);
    await until(() => countLines(out) + countLines(errors) >= LINES / 2, 'half of the lines were written', () => exited);
    first.kill('SIGKILL');
    await new Promise((resolve) => (exited ? resolve(undefined) : first.once('exit', resolve)));
    const before = countLines(out) + countLines(errors);
    expect(before).toBeGreaterThanOrEqual(LINES / 2);
    expect(before).toBeLessThan(LINES);

    const { stderr } = await run(process.execPath, [cli, 'run-batch', '-i', path.join(work, 'in.jsonl'), '-o', out, '--errors', errors, '--model', model, '--resume'])
      .catch((error: { code: number; stderr: string }) => {
        expect(error.code).toBe(1); // the two bad lines were written by the first run or fail again
        return error;
      });
    expect(stderr).toMatch(new RegExp(`${LINES} requests written`));
    const resumed = [...read(out), ...read(errors)].sort((a, b) => indexOf(a) - indexOf(b));
    expect(resumed.map(indexOf)).toEqual([...Array(LINES).keys()]);
    const reference = [...read(path.join(work, 'reference.jsonl')), ...read(path.join(work, 'reference-errors.jsonl'))].sort((a, b) => indexOf(a) - indexOf(b));
    expect(resumed.map(comparable)).toEqual(reference.map(comparable));
    // Each file is in input order on its own too.
    for (const file of [out, errors]) {
      const indexes = read(file).map(indexOf);
      expect(indexes).toEqual([...indexes].sort((a, b) => a - b));
    }
  });

  it('refuses to resume into the output of another input', async () => {
    const other = path.join(work, 'other.jsonl');
    fs.writeFileSync(other, `${JSON.stringify({ custom_id: 'different', method: 'POST', url: '/v1/completions', body: { model: 'falcon', prompt: 'x', max_tokens: 2 } })}\n`);
    await expect(run(process.execPath, [cli, 'run-batch', '-i', other, '-o', path.join(work, 'killed.jsonl'), '--errors', path.join(work, 'killed-errors.jsonl'), '--model', model, '--resume']))
      .rejects.toThrow(/--resume: the output holds 1000 results but .*other\.jsonl has 1 requests: not the same input/);
  });
});
