// `falconq model verify` and the same check at engine start: a truncated weights file, a missing tokenizer and a
// flipped byte are each caught and named, with "re-convert" rather than an onnxruntime error.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Command } from 'commander';
import { EngineConfigurationError, GenerationEngine } from '@app/engine';
import { DamagedModelError, readManifest } from '@app/model';
import { registerModelCommands } from '../../apps/cli/src/commands/model';
import { tinyModelDir } from '../support/tiny-model';

let work: string;
let intact: string;
beforeAll(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'falconq-verify-'));
  intact = await tinyModelDir();
});
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

/** A copy of the tiny model, damaged by `damage`. */
function damagedCopy(name: string, damage: (dir: string) => void): string {
  const dir = path.join(work, name);
  fs.cpSync(intact, dir, { recursive: true });
  damage(dir);
  return dir;
}

async function verify(dir: string): Promise<{ stdout: string; exitCode: number }> {
  const program = new Command('falconq').exitOverride();
  registerModelCommands(program);
  let stdout = '';
  const out = jest.spyOn(process.stdout, 'write').mockImplementation((chunk) => ((stdout += String(chunk)), true));
  const before = process.exitCode;
  try {
    await program.parseAsync(['node', 'falconq', 'model', 'verify', dir]);
    return { stdout, exitCode: Number(process.exitCode ?? 0) };
  } finally {
    out.mockRestore();
    process.exitCode = before;
  }
}

const weightsFile = (dir: string) => path.join(dir, readManifest(dir).files.weights);

const damages: [string, (dir: string) => void, string, RegExp][] = [
  ['truncated weights', (dir) => fs.truncateSync(weightsFile(dir), fs.statSync(weightsFile(dir)).size - 100), 'model.onnx.data', /has \d+ bytes, the manifest says \d+ \(truncated\)/],
  ['missing tokenizer', (dir) => fs.rmSync(path.join(dir, 'tokenizer.json')), 'tokenizer.json', /is missing/],
  ['flipped byte', (dir) => {
    const fd = fs.openSync(weightsFile(dir), 'r+');
    const byte = Buffer.alloc(1);
    const at = Math.floor(fs.statSync(weightsFile(dir)).size / 2);
    fs.readSync(fd, byte, 0, 1, at);
    byte[0] ^= 0x01;
    fs.writeSync(fd, byte, 0, 1, at);
    fs.closeSync(fd);
  }, 'model.onnx.data', /sha256 differs from the manifest/],
];

describe('falconq model verify', () => {
  it('records the size and sha256 of every file at build time and finds an intact model intact', async () => {
    const manifest = readManifest(intact);
    expect(Object.keys(manifest.checksums ?? {})).toEqual(expect.arrayContaining(['model.onnx', 'model.onnx.data', 'tokenizer.json']));
    expect(manifest.checksums!['model.onnx.data']).toEqual({ bytes: fs.statSync(weightsFile(intact)).size, sha256: expect.stringMatching(/^[0-9a-f]{64}$/) });
    const { stdout, exitCode } = await verify(intact);
    expect(exitCode).toBe(0);
    expect(stdout).toMatch(/: intact\n$/);
    expect(stdout).not.toContain('DAMAGED');
  });

  it.each(damages)('catches a %s', async (name, damage, file, problem) => {
    const dir = damagedCopy(name.replace(/ /g, '-'), damage);
    const { stdout, exitCode } = await verify(dir);
    expect(exitCode).toBe(1);
    const line = stdout.split('\n').find((l) => l.includes('DAMAGED'));
    expect(line).toContain(file);
    expect(line).toMatch(problem);
    expect(stdout).toMatch(/damaged; re-convert it/);
  });

  it('stops engine start on a truncated weights file or a missing tokenizer with "re-convert", before onnxruntime loads it', async () => {
    for (const [name, damage, file] of damages.slice(0, 2)) {
      const dir = damagedCopy(`engine-${name.replace(/ /g, '-')}`, damage);
      // A configuration the engine cannot start with (a worker exits with code 2), caused by the damage.
      const error = await GenerationEngine.start({ modelDir: dir, executionProvider: 'cpu', slots: 1, inProcess: true }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(EngineConfigurationError);
      expect((error as Error).cause).toBeInstanceOf(DamagedModelError);
      await expect(GenerationEngine.start({ modelDir: dir, executionProvider: 'cpu', slots: 1, inProcess: true }))
        .rejects.toThrow(new RegExp(`${file.replace('.', '\\.')} .*Re-convert the model`));
    }
  });
});
