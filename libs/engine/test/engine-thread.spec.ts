// The worker_thread mode runs compiled JavaScript: this suite uses dist/ (npm test's pretest builds it; run
// `npm run build` before running this file alone).
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { threadId } from 'node:worker_threads';
import type * as EngineModule from '@app/engine';
import { tinyModelDir } from '../../../test/support/tiny-model';

const root = path.resolve(__dirname, '../../..');
const distEntry = path.join(root, 'dist/libs/engine/src/index.js');
const built = fs.existsSync(distEntry) && fs.existsSync(path.join(root, 'dist/libs/engine/src/thread/engine-thread.js'));
if (!built) console.warn(`engine-thread.spec: skipped, ${distEntry} is missing: run "npm run build" first (npm test does it)`);
const describeBuilt = built ? describe : describe.skip;

describeBuilt('GenerationEngine in its worker_thread (dist/)', () => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- the compiled module is chosen at run time
  const load = () => require(distEntry) as typeof EngineModule;

  it('importing the engine entry does not load onnxruntime-node', () => {
    const script = `require(${JSON.stringify(distEntry)}); console.log(Object.keys(require.cache).filter((f) => f.includes('onnxruntime-node')).length)`;
    expect(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' }).trim()).toBe('0');
  });

  it('the engine thread\'s code does not load libs/model (only its types: the converter, hub and checkpoint code stay out)', () => {
    const core = path.join(root, 'dist/libs/engine/src/core/engine-core.js');
    const script = `require(${JSON.stringify(core)}); console.log(Object.keys(require.cache).filter((f) => f.includes('/libs/model/src/')).join(' ') || 'none')`;
    expect(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' }).trim()).toBe('none');
  });

  it('streams tokens and returns the same result as in-process, without blocking the owner event loop', async () => {
    const { GenerationEngine } = load();
    const modelDir = await tinyModelDir();
    const request = { id: 'r', prompt: 'Hello from the thread', params: { maxNewTokens: 40, ignoreEos: true } };
    const inProcess = await GenerationEngine.start({ modelDir, executionProvider: 'cpu', slots: 2, inProcess: true });
    const expected = await inProcess.submit(request);
    await inProcess.close();

    const engine = await GenerationEngine.start({ modelDir, executionProvider: 'cpu', slots: 2 });
    try {
      let ticks = 0;
      const timer = setInterval(() => (ticks += 1), 1);
      const streamed: number[] = [];
      const result = await engine.submit(request, (event) => streamed.push(event.token));
      clearInterval(timer);
      expect(result.sequences).toEqual(expected.sequences);
      expect(streamed).toEqual(result.sequences[0].tokens);
      expect(ticks).toBeGreaterThan(3);
      expect(inProcess.info.threadId).toBe(threadId);
      expect(engine.info.threadId).not.toBe(threadId);
      const stats = await engine.stats();
      expect(stats).toMatchObject({ activeSequences: 0, generatedTokens: 40, slots: 2 });
    } finally {
      await engine.close();
    }
  });

  it('says an engine that cannot start with its options is a configuration error, from its thread too', async () => {
    const { GenerationEngine, EngineConfigurationError } = load();
    const modelDir = await tinyModelDir();
    // Validated inside the thread: the error crosses the thread boundary and keeps its class.
    const error = await GenerationEngine.start({ modelDir, executionProvider: 'cpu', slots: 1, decodeChunkSteps: 0 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(EngineConfigurationError);
    expect((error as Error).message).toMatch(/invalid engine option decodeChunkSteps: must be an integer in 1..1024, got 0/);
    // A directory that is not a model, and a graph the options need that the model lacks.
    await expect(GenerationEngine.start({ modelDir: path.dirname(modelDir), executionProvider: 'cpu', slots: 1 })).rejects.toBeInstanceOf(EngineConfigurationError);
    const floatWeights = await tinyModelDir({ weights: 'fp32' });
    await expect(GenerationEngine.start({ modelDir: floatWeights, executionProvider: 'cpu', slots: 1, decodeChunkSteps: 4, dequantizeWeights: true })).rejects.toBeInstanceOf(EngineConfigurationError);
  });

  it('says an execution provider this installation lacks is missing, from its thread too', async () => {
    const { GenerationEngine, ExecutionProviderUnavailableError, failsAgainOnRestart } = load();
    const error = await GenerationEngine.start({ modelDir: await tinyModelDir(), executionProvider: 'cuda', slots: 1 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ExecutionProviderUnavailableError);
    expect((error as EngineModule.ExecutionProviderUnavailableError).missing).toBe(true);
    expect(failsAgainOnRestart(error)).toBe(true);
  });

  it('rejects a bad request with its field and a submit after close', async () => {
    const { GenerationEngine, InvalidGenerationParamError } = load();
    const engine = await GenerationEngine.start({ modelDir: await tinyModelDir(), executionProvider: 'cpu', slots: 1 });
    const error = await engine.submit({ id: 'x', prompt: 'word '.repeat(2100) }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InvalidGenerationParamError);
    expect((error as EngineModule.InvalidGenerationParamError).field).toBe('prompt');
    await engine.close();
    await expect(engine.submit({ id: 'y', prompt: 'Hi' })).rejects.toThrow(/closed/);
  });

  it('reports a missing model directory when starting', async () => {
    const { GenerationEngine } = load();
    await expect(GenerationEngine.start({ modelDir: path.join(root, 'no-such-model'), executionProvider: 'cpu', slots: 1 })).rejects.toThrow(/falconq\.json.*falconq model directory/);
  });
});
