import { EngineClosedError, InvalidGenerationParamError, type TokenEvent } from '@app/engine';
import { tinyModelDir } from '../../../test/support/tiny-model';
import { SimulatedEngine } from './simulated-engine';

describe('SimulatedEngine (the stand-in device of the scale-out benchmark)', () => {
  let modelDir: string;
  beforeAll(async () => {
    modelDir = await tinyModelDir();
  });

  it('runs at most `slots` prompts per step, one token each, and gives every prompt max_new_tokens tokens', async () => {
    const engine = SimulatedEngine.start({ modelDir, slots: 2, stepMs: 1 });
    const tokens = new Map<string, TokenEvent[]>();
    const busiest: number[] = [];
    const results = await Promise.all(['a', 'b', 'c'].map((id, i) =>
      engine.submit({ id, prompt: `prompt ${id}`, params: { maxNewTokens: 3 + i, ignoreEos: true } }, (event) => {
        tokens.set(id, [...(tokens.get(id) ?? []), event]);
        busiest.push(engine.stats().activeSequences);
      })));
    expect(results.map((r) => r.sequences[0].tokens.length)).toEqual([3, 4, 5]);
    expect(results.map((r) => r.sequences[0].finishReason)).toEqual(['length', 'length', 'length']);
    expect(results[0].sequences[0].text).toBe(tokens.get('a')!.map((t) => t.text).join(''));
    expect(results.every((r) => r.promptTokens > 0)).toBe(true);
    expect(Math.max(...busiest)).toBe(2);
    const stats = engine.stats();
    expect(stats).toMatchObject({ generatedTokens: 12, activeSequences: 0, waitingRequests: 0, finishedSequences: 3 });
    // c waited for a free slot; every row of every step gave one token.
    expect(stats.decodeRows).toBe(12);
    await engine.close();
  });

  it('without ignore_eos ends each prompt at its own length, between half and all of max_new_tokens', async () => {
    const engine = SimulatedEngine.start({ modelDir, slots: 8, stepMs: 1 });
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => engine.submit({ id: `r${i}`, prompt: 'p', params: { maxNewTokens: 20 } })));
    const lengths = results.map((r) => r.sequences[0].tokens.length);
    expect(lengths.every((n) => n >= 10 && n <= 20)).toBe(true);
    expect(new Set(lengths).size).toBeGreaterThan(1);
    results.forEach((r) => expect(r.sequences[0].finishReason).toBe(r.sequences[0].tokens.length < 20 ? 'eos' : 'length'));
    await engine.close();
  });

  it('refuses bad parameters like the real engine, cancels, and rejects what is pending when closed', async () => {
    const engine = SimulatedEngine.start({ modelDir, slots: 1, stepMs: 5 });
    await expect(engine.submit({ id: 'bad', prompt: 'x', params: { temperature: -1 } })).rejects.toBeInstanceOf(InvalidGenerationParamError);
    const long = engine.submit({ id: 'long', prompt: 'x', params: { maxNewTokens: 1000 } });
    const queued = engine.submit({ id: 'queued', prompt: 'y', params: { maxNewTokens: 1000 } });
    await new Promise((resolve) => setTimeout(resolve, 30));
    engine.cancel('long');
    expect((await long).sequences[0].finishReason).toBe('cancelled');
    await engine.close();
    await expect(queued).rejects.toBeInstanceOf(EngineClosedError);
  });
});
