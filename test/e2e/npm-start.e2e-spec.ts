// `npm start` (scripts/start.js) started twice: the second one stops with a clear error instead of reporting the
// first one's api as its own, and two of them never share one Redis data directory.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { freePort } from '../support/redis';
import { tinyModelDir } from '../support/tiny-model';

const root = path.resolve(__dirname, '../..');

interface Started {
  child: ChildProcess;
  output: () => string;
  exit: Promise<number | null>;
}

function npmStart(env: Record<string, string>): Started {
  const child = spawn(process.execPath, [path.join(root, 'scripts/start.js')], { cwd: root, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, output: () => output, exit };
}

async function waitForOutput(started: Started, text: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!started.output().includes(text)) {
    if (started.child.exitCode !== null) throw new Error(`npm start exited (${started.child.exitCode}) before printing "${text}":\n${started.output()}`);
    if (Date.now() > deadline) throw new Error(`npm start did not print "${text}" in ${timeoutMs / 1000} s:\n${started.output()}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe('npm start, twice', () => {
  let dataDir: string;
  let first: Started | undefined;
  beforeAll(() => {
    if (!fs.existsSync(path.join(root, 'dist/apps/api/src/main.js'))) throw new Error('dist/ is missing: run "npm run build" first (npm test does it)');
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'falconq-start-'));
  });
  afterAll(async () => {
    if (first && first.child.exitCode === null) {
      first.child.kill('SIGTERM');
      await first.exit;
    }
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('says the port is in use, refuses the Redis directory another start holds, and keeps Nest route logs quiet', async () => {
    const model = await tinyModelDir();
    const port = await freePort();
    first = npmStart({ PORT: String(port), MODEL_DIR: model, FALCONQ_DATA_DIR: dataDir });
    await waitForOutput(first, 'falconq is running', 120_000);
    const apiLines = first.output().split('\n').filter((line) => line.startsWith('[api]'));
    expect(apiLines.join('\n')).toContain('listening on');
    expect(apiLines.join('\n')).not.toMatch(/Mapped \{|RoutesResolver|dependencies initialized/);

    const samePort = npmStart({ PORT: String(port), MODEL_DIR: model, FALCONQ_DATA_DIR: dataDir });
    expect(await samePort.exit).toBe(1);
    expect(samePort.output()).toContain(`port ${port} is in use`);
    expect(samePort.output()).not.toContain('falconq is running');

    const otherPort = npmStart({ PORT: String(await freePort()), MODEL_DIR: model, FALCONQ_DATA_DIR: dataDir });
    expect(await otherPort.exit).toBe(1);
    expect(otherPort.output()).toContain(`${path.join(dataDir, 'redis')} is in use by another npm start (pid ${first.child.pid})`);
    expect(otherPort.output()).not.toContain('falconq is running');

    // The first one is untouched by both attempts, and stops cleanly.
    expect((await fetch(`http://127.0.0.1:${port}/health`)).status).toBe(200);
    first.child.kill('SIGTERM');
    expect(await first.exit).toBe(0);
    expect(fs.existsSync(path.join(dataDir, 'redis', 'falconq-start.lock'))).toBe(false);
  });
});
