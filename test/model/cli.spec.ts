import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Command } from 'commander';
import { readManifest, writeTinyCheckpoint } from '@app/model';
import { registerModelCommands } from '../../apps/cli/src/commands/model';
import { registerTokenizeCommand } from '../../apps/cli/src/commands/tokenize';
import { readHubConfig } from '../../apps/cli/src/config/hub.config';

let work: string;
beforeAll(() => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'falconq-cli-'));
});
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

/** Runs `falconq <args>` in process with only the model and tokenize commands; returns stdout and stderr. */
async function falconq(...args: string[]): Promise<{ stdout: string; stderr: string }> {
  const program = new Command('falconq').exitOverride();
  registerModelCommands(program);
  registerTokenizeCommand(program);
  let stdout = '';
  let stderr = '';
  const out = jest.spyOn(process.stdout, 'write').mockImplementation((chunk) => ((stdout += String(chunk)), true));
  const err = jest.spyOn(process.stderr, 'write').mockImplementation((chunk) => ((stderr += String(chunk)), true));
  try {
    await program.parseAsync(['node', 'falconq', ...args]);
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
  return { stdout, stderr };
}

describe('falconq model / tokenize commands', () => {
  it('model tiny builds a model, prints a summary, and refuses to overwrite it', async () => {
    const out = path.join(work, 'tiny');
    const { stdout, stderr } = await falconq('model', 'tiny', '--out', out, '--seed', '5', '--weights', 'fp32');
    expect(stdout).toContain(out);
    expect(stdout).toMatch(/2 layers, hidden 64, vocab 384; weights fp32, activations fp32, target cpu/);
    expect(stdout).toMatch(/\d+\.\d\d [KM]iB on disk, built in \d+\.\d s/);
    expect(stderr).toMatch(/weights .*100%/);
    expect(readManifest(out).source).toEqual({ kind: 'tiny', id: 'tiny-falcon-seed-5' });
    await expect(falconq('model', 'tiny', '--out', out)).rejects.toThrow(/already holds a converted model; pass --force/);
    await falconq('model', 'tiny', '--out', out, '--force');
    expect(readManifest(out).weights.dtype).toBe('int4');
  });

  it('model convert converts a local checkpoint with the chosen options', async () => {
    const source = path.join(work, 'checkpoint');
    writeTinyCheckpoint(source, { seed: 1, configNaming: 'rw' });
    const out = path.join(work, 'converted');
    await falconq('model', 'convert', source, '--out', out, '--target', 'gpu', '--block-size', '16');
    const manifest = readManifest(out);
    expect(manifest).toMatchObject({ target: 'gpu', activations: 'fp16', weights: { dtype: 'int4', quantization: { blockSize: 16, accuracyLevel: 4 } } });
    await falconq('model', 'convert', source, '--out', out, '--accuracy-level', '0', '--force');
    expect(readManifest(out).weights.quantization?.accuracyLevel).toBe(0);
    await expect(falconq('model', 'convert', source, '--out', out, '--accuracy-level', '5', '--force')).rejects.toThrow(/--accuracy-level must be 0, 1, 2, 3 or 4/);
    await expect(falconq('model', 'convert', source, '--out', out, '--block-size', '12')).rejects.toThrow(/--block-size must be an integer >= 16|power of 2/);
    await expect(falconq('model', 'convert', source, '--out', path.join(work, 'c2'), '--weights', 'int8')).rejects.toThrow(/Allowed choices are int4, fp16, fp32/);
  });

  it('model inspect prints the manifest, files and op counts (and JSON)', async () => {
    const out = path.join(work, 'inspect');
    await falconq('model', 'tiny', '--out', out);
    const { stdout } = await falconq('model', 'inspect', out);
    expect(stdout).toMatch(/weights\s+int4 \(rtn-symmetric, block 32, accuracy_level 4\)/);
    // Per layer: QKV + MLP-up fused, dense, down; plus lm_head.
    expect(stdout).toMatch(/com\.microsoft::MatMulNBits\s+7/);
    expect(stdout).toMatch(/com\.microsoft::GroupQueryAttention\s+2/);
    expect(stdout).toMatch(/model\.onnx\.data/);
    const json = JSON.parse((await falconq('model', 'inspect', out, '--json')).stdout);
    expect(json.ops['com.microsoft::GatherBlockQuantized']).toBe(1);
    expect(json.opsets).toEqual({ 'ai.onnx': 21, 'com.microsoft': 1 });
    expect(json.irVersion).toBe(10);
  });

  it('tokenize prints ids, or ids and token texts as JSON', async () => {
    const out = path.join(work, 'tokenize');
    await falconq('model', 'tiny', '--out', out);
    const plain = (await falconq('tokenize', '--model', out, 'Hello,', 'world!')).stdout.trim().split(' ').map(Number);
    expect(plain.length).toBeGreaterThan(1);
    const json = JSON.parse((await falconq('tokenize', '--model', out, '--json', 'Hello, world!')).stdout);
    expect(json.ids).toEqual(plain);
    expect(json.tokens.join('')).toBe('Hello, world!');
  });
});

describe('hub config', () => {
  it('reads HF_TOKEN, HF_ENDPOINT and the cache dir from the given environment', () => {
    expect(readHubConfig({ HF_TOKEN: ' t ', HF_ENDPOINT: 'https://hf-mirror.example', FALCONQ_HUB_CACHE: '/cache' })).toEqual({
      token: 't', endpoint: 'https://hf-mirror.example', cacheDir: '/cache',
    });
    expect(readHubConfig({}).token).toBeUndefined();
    expect(() => readHubConfig({ HF_ENDPOINT: 'ftp://x' })).toThrow(/HF_ENDPOINT must be an http\(s\) URL/);
  });
});
