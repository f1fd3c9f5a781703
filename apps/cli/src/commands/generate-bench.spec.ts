// `falconq generate` and `falconq bench` as a user runs them: the built CLI (dist/, built by npm test's pretest)
// against the tiny model.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { tinyModelDir } from '../../../../test/support/tiny-model';

const root = path.resolve(__dirname, '../../../..');
const cli = path.join(root, 'bin/falconq.js');
const built = fs.existsSync(path.join(root, 'dist/apps/cli/src/main.js'));
if (!built) console.warn('generate-bench.spec: skipped, dist/ is missing: run "npm run build" first (npm test does it)');
const describeBuilt = built ? describe : describe.skip;
const run = promisify(execFile);

describeBuilt('falconq generate / bench (built CLI, tiny model)', () => {
  it('generate --json prints one line per prompt, in order, with the generated ids and the finish reason', async () => {
    const model = await tinyModelDir();
    const { stdout } = await run(process.execPath, [cli, 'generate', '--model', model, '--json', '--max-new-tokens', '5', '--ignore-eos', 'Hello world', 'A']);
    const lines = stdout.trim().split('\n').map((line) => JSON.parse(line) as { prompt: string; text: string; tokens: number[]; finish_reason: string });
    expect(lines.map((line) => line.prompt)).toEqual(['Hello world', 'A']);
    for (const line of lines) {
      expect(line.tokens).toHaveLength(5);
      expect(line.finish_reason).toBe('length');
      expect(typeof line.text).toBe('string');
    }
  });

  it('generate names the flag, not the engine field, and exits with 1 before loading the model', async () => {
    const model = await tinyModelDir();
    const fail = (args: string[]) => run(process.execPath, [cli, 'generate', '--model', model, ...args, 'Hi']).then(
      () => { throw new Error('expected a failure'); },
      (error: { code: number; stderr: string }) => error,
    );
    const topP = await fail(['--top-p', '2']);
    expect(topP.code).toBe(1);
    expect(topP.stderr).toContain('falconq: --top-p must be in (0, 1], got 2');
    expect((await fail(['--max-new-tokens', '0'])).stderr).toMatch(/falconq: --max-new-tokens must be between 1 and \d+, got 0/);
    const greedyCopies = (await fail(['--num-return-sequences', '2'])).stderr;
    expect(greedyCopies).toMatch(/--num-return-sequences is 2 but --sample is not given/);
    expect(greedyCopies).not.toMatch(/doSample|numReturnSequences/);
    expect((await fail(['--max-new-tokens', '4000'])).stderr).not.toMatch(/maxNewTokens/);
  });

  it('generate reads prompts from stdin and from --file, one per line, JSON lines allowed', async () => {
    const model = await tinyModelDir();
    const input = 'first prompt\n\n"a \\"quoted\\"\\nprompt"\n{"prompt": "third"}\n';
    const fromStdin = await new Promise<string>((resolve, reject) => {
      const child = execFile(process.execPath, [cli, 'generate', '--model', model, '--json', '--max-new-tokens', '2', '--ignore-eos'], (error, stdout) => (error ? reject(error) : resolve(stdout)));
      child.stdin!.end(input);
    });
    const prompts = (out: string) => out.trim().split('\n').map((line) => (JSON.parse(line) as { prompt: string }).prompt);
    expect(prompts(fromStdin)).toEqual(['first prompt', 'a "quoted"\nprompt', 'third']);
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'falconq-prompts-')), 'prompts.txt');
    fs.writeFileSync(file, input);
    const { stdout } = await run(process.execPath, [cli, 'generate', '--model', model, '--json', '--max-new-tokens', '2', '--file', file, 'an argument']);
    expect(prompts(stdout)).toEqual(['an argument', 'first prompt', 'a "quoted"\nprompt', 'third']);
    fs.writeFileSync(file, '{"text": "no prompt"}\n');
    await expect(run(process.execPath, [cli, 'generate', '--model', model, '--file', file])).rejects.toThrow(/prompts\.txt line 1: a JSON line must be a string or an object with a "prompt" string/);
  });

  it('--version prints the package version', async () => {
    const { stdout } = await run(process.execPath, [cli, '--version']);
    const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string };
    expect(stdout.trim()).toBe(pkg.version);
  });

  it('bench prints tables without JSON unless --json or --out asks for it', async () => {
    const model = await tinyModelDir();
    const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'falconq-bench-')), 'report.json');
    const { stdout } = await run(process.execPath, [cli, 'bench', '--model', model, '--batch', '1', '--prompt-len', '8', '--new-tokens', '4', '--no-mixed', '--out', out]);
    expect(stdout).toMatch(/tok\/s/);
    expect(stdout).not.toContain('"batches"');
    expect(stdout).toContain(`report written to ${out}`);
    expect((JSON.parse(fs.readFileSync(out, 'utf8')) as { batches: unknown[] }).batches).toHaveLength(1);
  });

  it('bench --json reports every batch and the continuous/static mixed runs', async () => {
    const model = await tinyModelDir();
    const { stdout } = await run(process.execPath, [cli, 'bench', '--model', model, '--json', '--batch', '1,2', '--prompt-len', '8', '--new-tokens', '4', '--mixed-requests', '4']);
    const report = JSON.parse(stdout) as {
      command: string;
      date: string;
      gpus: unknown;
      batches: { batch: number; tokensPerSecond: number; decodeSteps: number; peakGpuMiB: number | null }[];
      mixed: { runs: { admission: string; generatedTokens: number }[] };
    };
    expect(report.command).toContain('bench --model');
    expect(Number.isNaN(Date.parse(report.date))).toBe(false);
    expect(report.batches.map((row) => row.batch)).toEqual([1, 2]);
    for (const row of report.batches) {
      expect(row.tokensPerSecond).toBeGreaterThan(0);
      expect(row.decodeSteps).toBe(3); // 4 tokens: the first comes from the prefill
    }
    expect(report.mixed.runs.map((r) => r.admission)).toEqual(['continuous', 'static']);
    expect(report.mixed.runs[0].generatedTokens).toBe(report.mixed.runs[1].generatedTokens);
  });

  it('bench --mixed-in-flight feeds the mixed workload as a queue worker does and reports how full the batch ran', async () => {
    const model = await tinyModelDir();
    const { stdout } = await run(process.execPath, [cli, 'bench', '--model', model, '--json', '--batch', '4', '--prompt-len', '8', '--new-tokens', '4',
      '--mixed-requests', '10', '--mixed-in-flight', '3', '--mixed-admission', 'continuous']);
    const report = JSON.parse(stdout) as { mixed: { inFlight: number; requests: number; runs: { admission: string; requests: number; rowsPerDecodeStep: number; prefillRuns: number }[] } };
    expect(report.mixed).toMatchObject({ inFlight: 3, requests: 10 });
    const [continuous] = report.mixed.runs;
    expect(continuous).toMatchObject({ admission: 'continuous', requests: 10 });
    // At most 3 requests outstanding, so never more than 3 rows per decode step on the 4 slots.
    expect(continuous.rowsPerDecodeStep).toBeGreaterThan(0);
    expect(continuous.rowsPerDecodeStep).toBeLessThanOrEqual(3);
    expect(continuous.prefillRuns).toBeGreaterThan(0);
    await expect(run(process.execPath, [cli, 'bench', '--model', model, '--mixed-in-flight', '0'])).rejects.toThrow(/--mixed-in-flight must be at least 1, got 0/);
    await expect(run(process.execPath, [cli, 'bench', '--model', model, '--gpu-memory-interval', '-5'])).rejects.toThrow(/--gpu-memory-interval must be at least 0, got -5/);
  });

  it('bench --dequantize-weights runs the decode loop over weights dequantized at load and says so, with each engine\'s start time', async () => {
    const model = await tinyModelDir();
    const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'falconq-bench-')), 'report.json');
    const { stdout } = await run(process.execPath, [cli, 'bench', '--model', model, '--batch', '1,2', '--prompt-len', '8', '--new-tokens', '4', '--decode-chunk', '4',
      '--dequantize-weights', '--no-mixed', '--out', out]);
    expect(stdout).toMatch(/engine start: batch 1 \d+\.\d s, batch 2 \d+\.\d s \(weights dequantized at load, --dequantize-weights\)/);
    const report = JSON.parse(fs.readFileSync(out, 'utf8')) as { engine: { dequantizedWeights: boolean }; batches: { loadMs: number }[] };
    expect(report.engine.dequantizedWeights).toBe(true);
    expect(report.batches.every((row) => row.loadMs > 0)).toBe(true);
    await expect(run(process.execPath, [cli, 'bench', '--model', model, '--dequantize-weights', '--no-mixed'])).rejects.toThrow(/dequantizeWeights: .*set decodeChunkSteps above 1/);
  });

  it('bench --prefill-warm-up on warms each engine at load and says so in the table and the report', async () => {
    const model = await tinyModelDir();
    const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'falconq-bench-')), 'report.json');
    const { stdout } = await run(process.execPath, [cli, 'bench', '--model', model, '--batch', '4', '--prompt-len', '8', '--new-tokens', '4', '--max-seq-len', '2048',
      '--prefill-chunk', '4096', '--prefill-run-cost', '100', '--prefill-warm-up', 'on', '--mixed-requests', '4', '--mixed-admission', 'continuous', '--out', out]);
    expect(stdout).toMatch(/at load \(--prefill-warm-up\): batch 4 prefill warm-up 1 run in \d+\.\d s/);
    expect(stdout).toMatch(/prefill budget 4096 tokens at 4 slots \(runs cost 100 tokens\)/);
    expect(stdout).toMatch(/continuous engine: prefill warm-up 1 run in \d+\.\d s at load/);
    const report = JSON.parse(fs.readFileSync(out, 'utf8')) as { batches: { warmUp: { runs: number; ms: number } }[] };
    expect(report.batches[0].warmUp.runs).toBe(1);
    await expect(run(process.execPath, [cli, 'bench', '--model', model, '--prefill-warm-up', 'yes'])).rejects.toThrow(/--prefill-warm-up must be auto, on, off, got "yes"/);
  });
});
