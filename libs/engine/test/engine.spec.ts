// The engine over a real tiny ONNX Falcon on the CPU EP, in-process mode (the worker_thread mode runs the same core:
// see engine-thread.spec.ts).
import {
  type EngineOptions,
  GenerationEngine,
  type GenerationParams,
  type GenerationResult,
  EngineClosedError,
  ExecutionProviderUnavailableError,
  failsAgainOnRestart,
  InvalidGenerationParamError,
  Tokenizer,
} from '@app/engine';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createRandomModel, TINY_SHAPE } from '@app/model';
import { tinyModelDir, tinyModelReference } from '../../../test/support/tiny-model';

const PROMPTS = [
  'Hello world',
  'The quick brown fox jumps over the lazy dog and keeps running far away',
  'A',
  'Falcon models generate text one token at a time; long prompts are prefilled in chunks so that others keep going.',
  'Question: what is two plus two? Answer:',
];

interface Job {
  id: string;
  prompt: string;
  params?: Partial<GenerationParams>;
}

async function withEngine<T>(options: Partial<EngineOptions>, use: (engine: GenerationEngine) => Promise<T>): Promise<T> {
  const engine = await GenerationEngine.start({
    modelDir: await tinyModelDir(),
    executionProvider: 'cpu',
    slots: 4,
    inProcess: true,
    ...options,
  });
  try {
    return await use(engine);
  } finally {
    await engine.close();
  }
}

/** Runs jobs one by one, each alone in the engine. */
async function alone(options: Partial<EngineOptions>, jobs: Job[]): Promise<Map<string, GenerationResult>> {
  return withEngine({ ...options, slots: 1 }, async (engine) => {
    const results = new Map<string, GenerationResult>();
    for (const job of jobs) results.set(job.id, await engine.submit(job));
    return results;
  });
}

/**
 * Job i+1 is submitted when job i has produced `stagger` tokens, so they join a running batch at different steps.
 * Every job must generate at least `stagger` tokens.
 */
async function staggered(options: Partial<EngineOptions>, jobs: Job[], stagger = 2): Promise<Map<string, GenerationResult>> {
  return withEngine(options, async (engine) => {
    const promises: Promise<GenerationResult>[] = [];
    let allSubmitted: () => void = () => undefined;
    const submitted = new Promise<void>((resolve) => (allSubmitted = resolve));
    const submit = (index: number) => {
      if (index === jobs.length) return allSubmitted();
      let seen = 0;
      promises.push(
        engine.submit(jobs[index], () => {
          seen += 1;
          if (seen === stagger) submit(index + 1);
        }),
      );
    };
    submit(0);
    await submitted;
    const results = await Promise.all(promises);
    return new Map(results.map((result) => [result.id, result]));
  });
}

const greedyJobs = (maxNewTokens = 10): Job[] =>
  PROMPTS.map((prompt, i) => ({ id: `p${i}`, prompt, params: { maxNewTokens: maxNewTokens + i, ignoreEos: true } }));

describe.each(['host', 'device', 'device-merge'] as const)('GenerationEngine on the tiny model (%s KV)', (kvPlacement) => {
  const options = { kvPlacement, prefillChunkTokens: 24 };

  it('greedy output of each prompt is the same alone and in a batch of mixed-length prompts joining at different times', async () => {
    const jobs = greedyJobs();
    const [single, batched] = [await alone(options, jobs), await staggered({ ...options, slots: 3 }, jobs)];
    // The host strategy is the yardstick (its fp32 greedy equals the reference forward pass, below).
    const yardstick = kvPlacement === 'host' ? single : await alone({ ...options, kvPlacement: 'host' }, jobs);
    for (const job of jobs) {
      expect(batched.get(job.id)?.sequences[0].tokens).toEqual(single.get(job.id)?.sequences[0].tokens);
      expect(single.get(job.id)?.sequences[0].tokens).toEqual(yardstick.get(job.id)?.sequences[0].tokens);
      expect(single.get(job.id)?.sequences[0].tokens).toHaveLength(job.params?.maxNewTokens as number);
    }
  });

  it('seeded sampling is reproducible and does not depend on the batch', async () => {
    const sampled: Job[] = [
      { id: 'topk', prompt: PROMPTS[0], params: { doSample: true, seed: 7, topK: 20, temperature: 1.3, maxNewTokens: 12, ignoreEos: true, numReturnSequences: 2 } },
      { id: 'topp', prompt: PROMPTS[1], params: { doSample: true, seed: 8, topP: 0.9, maxNewTokens: 12, ignoreEos: true } },
      { id: 'penalty', prompt: PROMPTS[4], params: { doSample: true, seed: 9, topK: 10, repetitionPenalty: 1.5, maxNewTokens: 12, ignoreEos: true } },
    ];
    const first = await alone(options, sampled);
    const mixed = await staggered({ ...options, slots: 3 }, [greedyJobs()[3], ...sampled], 1);
    for (const job of sampled) expect(mixed.get(job.id)?.sequences).toEqual(first.get(job.id)?.sequences);
    const [a, b] = first.get('topk')?.sequences ?? [];
    expect(a.tokens).not.toEqual(b.tokens);
  });

  it('a prefill warm-up at load leaves every row free: the same tokens follow as without it', async () => {
    const warmUp = { kvPlacement, prefillChunkTokens: 4096 };
    const jobs = greedyJobs();
    const cold = await staggered(warmUp, jobs);
    const warm = await withEngine({ ...warmUp, prefillWarmUp: 'on' }, async (engine) => {
      expect(engine.info.warmUp.runs).toBe(1); // 4 slots x 1024 tokens: the 4096-token bucket
      expect(engine.info.loadMs).toBeGreaterThanOrEqual(engine.info.warmUp.ms);
      expect(await engine.stats()).toMatchObject({ activeSequences: 0, prefillRuns: 0, promptTokens: 0 });
      return new Map((await Promise.all(jobs.map((job) => engine.submit(job)))).map((result) => [result.id, result]));
    });
    for (const job of jobs) expect(warm.get(job.id)?.sequences[0].tokens).toEqual(cold.get(job.id)?.sequences[0].tokens);
  });

  it('newcomers of mixed lengths prefilled in length-sorted runs (prefillRunCostTokens) get the same tokens as in one run', async () => {
    const jobs = greedyJobs();
    const together = async (prefillRunCostTokens: number) =>
      withEngine({ kvPlacement, prefillChunkTokens: 4096, slots: jobs.length, prefillRunCostTokens }, async (engine) => {
        const results = await Promise.all(jobs.map((job) => engine.submit(job)));
        return { results: new Map(results.map((result) => [result.id, result])), prefillRuns: (await engine.stats()).prefillRuns };
      });
    const [oneRun, split] = [await together(4096), await together(0)];
    for (const job of jobs) expect(split.results.get(job.id)?.sequences[0].tokens).toEqual(oneRun.results.get(job.id)?.sequences[0].tokens);
    if (kvPlacement === 'device') return; // joins through decode: one batch start, nothing to split
    expect(oneRun.prefillRuns).toBe(1);
    // The five prompts have five lengths: with runs free, each is its own run.
    expect(split.prefillRuns).toBe(jobs.length);
  });

  it('cancel resolves the request as cancelled and frees its slot for the next one', async () => {
    const expected = (await alone(options, [{ id: 'next', prompt: PROMPTS[2], params: { maxNewTokens: 6 } }])).get('next');
    await withEngine({ ...options, slots: 1 }, async (engine) => {
      let tokens = 0;
      const long = engine.submit({ id: 'long', prompt: PROMPTS[0], params: { maxNewTokens: 1000, ignoreEos: true } }, () => {
        tokens += 1;
        if (tokens === 3) engine.cancel('long');
      });
      const next = engine.submit({ id: 'next', prompt: PROMPTS[2], params: { maxNewTokens: 6 } });
      const cancelled = await long;
      expect(cancelled.sequences[0].finishReason).toBe('cancelled');
      expect(cancelled.sequences[0].tokens.length).toBeLessThan(10);
      expect((await next).sequences).toEqual(expected?.sequences);
      expect(await engine.stats()).toMatchObject({ activeSequences: 0, waitingRequests: 0, cancelledRequests: 1 });
    });
  });
});

describe('GenerationEngine results', () => {
  it('greedy continuation of the fp32 model equals the reference forward pass', async () => {
    const dir = await tinyModelDir({ weights: 'fp32' });
    const tokenizer = Tokenizer.fromModelDir(dir);
    const reference = tinyModelReference({ weights: 'fp32' });
    await withEngine({ modelDir: dir, slots: 2 }, async (engine) => {
      for (const prompt of [PROMPTS[0], PROMPTS[4]]) {
        const result = await engine.submit({ id: prompt, prompt, params: { maxNewTokens: 8, ignoreEos: true } });
        expect(result.sequences[0].tokens).toEqual(reference.greedy(tokenizer.encode(prompt), 8));
      }
    });
  });

  it('stops exactly at maxNewTokens and at a stop string spanning tokens, excluded from the text', async () => {
    await withEngine({}, async (engine) => {
      const free = await engine.submit({ id: 'free', prompt: PROMPTS[1], params: { maxNewTokens: 12, ignoreEos: true } });
      const { tokens, text, finishReason } = free.sequences[0];
      expect(tokens).toHaveLength(12);
      expect(finishReason).toBe('length');
      const tokenizer = Tokenizer.fromModelDir(await tinyModelDir());
      // A stop string made of the end of token 3's text and the start of token 4's text.
      const prefix3 = tokenizer.decode(tokens.slice(0, 3), { skipSpecialTokens: true });
      const prefix4 = tokenizer.decode(tokens.slice(0, 4), { skipSpecialTokens: true });
      const prefix5 = tokenizer.decode(tokens.slice(0, 5), { skipSpecialTokens: true });
      expect(prefix5.length).toBeGreaterThan(prefix4.length + 0);
      const stop = prefix5.slice(Math.max(prefix3.length, prefix4.length - 1), prefix4.length + 1);
      const at = text.indexOf(stop);
      expect(at).toBeGreaterThan(0); // the chosen stop string must occur in the unstopped text
      const streamed: string[] = [];
      const stopped = await engine.submit({ id: 'stop', prompt: PROMPTS[1], params: { maxNewTokens: 12, ignoreEos: true, stop: [stop] } }, (event) => streamed.push(event.text));
      expect(stopped.sequences[0].finishReason).toBe('stop');
      expect(stopped.sequences[0].text).toBe(text.slice(0, at));
      expect(stopped.sequences[0].tokens).toEqual(tokens.slice(0, stopped.sequences[0].tokens.length));
      expect(streamed.join('')).toBe(stopped.sequences[0].text);
      const returnFull = await engine.submit({ id: 'full', prompt: PROMPTS[1], params: { maxNewTokens: 3, returnFullText: true } });
      expect(returnFull.sequences[0].text.startsWith(PROMPTS[1])).toBe(true);
    });
  });

  it('host KV: rows keep their tokens while the cache grows for a long row and shrinks after it leaves', async () => {
    const longPrompt = Array.from({ length: 300 }, (_, i) => 20 + ((i * 37) % 300));
    const jobs: Job[] = [
      { id: 'long', prompt: '', params: { maxNewTokens: 3, ignoreEos: true } },
      { id: 'short', prompt: PROMPTS[0], params: { maxNewTokens: 40, ignoreEos: true } },
    ];
    const withIds = (job: Job) => (job.id === 'long' ? { ...job, promptIds: longPrompt } : job);
    const single = await withEngine({ slots: 1 }, async (engine) => engine.submit(withIds(jobs[1])));
    await withEngine({ slots: 2, kvPlacement: 'host', prefillChunkTokens: 128 }, async (engine) => {
      const short = engine.submit(withIds(jobs[1]));
      const long = engine.submit(withIds(jobs[0]));
      expect((await long).promptTokens).toBe(300);
      expect((await short).sequences).toEqual(single.sequences);
    });
  });

  it('refuses bad requests naming the field, and keeps serving the others', async () => {
    await withEngine({}, async (engine) => {
      const field = async (promise: Promise<unknown>) => {
        const error = await promise.then(() => undefined, (e: unknown) => e);
        expect(error).toBeInstanceOf(InvalidGenerationParamError);
        return (error as InvalidGenerationParamError).field;
      };
      const good = engine.submit({ id: 'good', prompt: PROMPTS[0], params: { maxNewTokens: 4 } });
      expect(await field(engine.submit({ id: 'a', prompt: 'x', params: { temperature: 0 } }))).toBe('temperature');
      expect(await field(engine.submit({ id: 'b', prompt: 'x', params: { topP: 2 } }))).toBe('topP');
      expect(await field(engine.submit({ id: 'c', prompt: 'word '.repeat(3000), params: { maxNewTokens: 10 } }))).toBe('prompt');
      expect(await field(engine.submit({ id: 'd', prompt: '' }))).toBe('prompt');
      expect(await field(engine.submit({ id: '', prompt: 'x' }))).toBe('id');
      expect(await field(engine.submit({ id: 'f', prompt: '', promptIds: [1, 1e9] }))).toBe('promptIds[1]');
      const truncated = await engine.submit({ id: 'e', prompt: 'word '.repeat(3000), params: { maxNewTokens: 2, truncate: true } });
      expect(truncated.promptTokens).toBe(2048 - 2);
      expect((await good).sequences[0].tokens).toHaveLength(4);
    });
  });

  it('runs a gpu-target (fp16) model on cpu with a warning; its fp16 KV cache gives the same tokens batched as alone', async () => {
    const modelDir = await tinyModelDir({ target: 'gpu' });
    const warnings: string[] = [];
    const jobs = greedyJobs(6).slice(0, 3);
    const single = await alone({ modelDir, onWarning: (w) => warnings.push(w) }, jobs);
    const batched = await staggered({ modelDir, slots: 3, prefillChunkTokens: 8 }, jobs);
    for (const job of jobs) expect(batched.get(job.id)?.sequences).toEqual(single.get(job.id)?.sequences);
    expect(warnings.join('\n')).toMatch(/gpu target \(fp16\)/);
  });

  it('refuses the cuda provider here with the reason and how to install it, or falls back to cpu when asked', async () => {
    const refusal = await withEngine({ executionProvider: 'cuda' }, async () => undefined).catch((e: unknown) => e);
    expect((refusal as Error).message).toMatch(/cuda.*not installed.*falconq setup cuda/s);
    // Missing from this installation: a worker started again would fail again, so it stays down.
    expect(refusal).toBeInstanceOf(ExecutionProviderUnavailableError);
    expect((refusal as ExecutionProviderUnavailableError).missing).toBe(true);
    expect(failsAgainOnRestart(refusal)).toBe(true);
    expect(failsAgainOnRestart(new ExecutionProviderUnavailableError('cuda', 'no device'))).toBe(false);
    expect(failsAgainOnRestart(new Error('out of memory'))).toBe(false);
    const warnings: string[] = [];
    await withEngine({ executionProvider: 'cuda', fallbackToCpu: true, onWarning: (w) => warnings.push(w) }, async (engine) => {
      expect(engine.info.executionProvider).toBe('cpu');
      expect((await engine.submit({ id: 'x', prompt: 'Hi', params: { maxNewTokens: 2 } })).sequences[0].tokens).toHaveLength(2);
    });
    expect(warnings.join('\n')).toMatch(/Falling back to the cpu/);
  });
});

describe('GenerationEngine decode loop (decode-loop.onnx: several steps per run, tokens chosen in the graph)', () => {
  const oneStep = { kvPlacement: 'host' as const, prefillChunkTokens: 24, decodeChunkSteps: 1 };
  const looped = { ...oneStep, decodeChunkSteps: 4 };

  it('greedy tokens equal the one-step path, alone and in a batch whose rows join between runs', async () => {
    const jobs = greedyJobs(9);
    const single = await alone(oneStep, jobs);
    const loopAlone = await alone(looped, jobs);
    const loopBatched = await staggered({ ...looped, slots: 3 }, jobs, 3);
    for (const job of jobs) {
      expect(loopAlone.get(job.id)?.sequences).toEqual(single.get(job.id)?.sequences);
      expect(loopBatched.get(job.id)?.sequences).toEqual(single.get(job.id)?.sequences);
    }
  });

  it('runs several steps per model run, and fewer when the budgets left are shorter', async () => {
    await withEngine({ ...looped, slots: 2, decodeChunkSteps: 8 }, async (engine) => {
      expect(engine.info.decodeChunkSteps).toBe(8);
      await engine.submit({ id: 'a', prompt: PROMPTS[0], params: { maxNewTokens: 11, ignoreEos: true } });
      // First token from the prefill, then 10 decode steps: one run of 8, one of 2.
      expect(await engine.stats()).toMatchObject({ decodeSteps: 10, decodeRuns: 2, generatedTokens: 11 });
    });
  });

  it('an interactive request keeps runs at decodeChunkMinSteps while it decodes; batch work runs full length', async () => {
    const job: Job = { id: 'watched', prompt: PROMPTS[0], params: { maxNewTokens: 17, ignoreEos: true } };
    const single = await alone(oneStep, [job]);
    const runsFor = (interactive: boolean) =>
      withEngine({ ...looped, slots: 1, decodeChunkSteps: 16, decodeChunkMinSteps: 4 }, async (engine) => {
        expect(engine.info).toMatchObject({ decodeChunkSteps: 16, decodeChunkMinSteps: 4 });
        const result = await engine.submit({ ...job, interactive });
        expect(result.sequences).toEqual(single.get(job.id)?.sequences);
        return (await engine.stats()).decodeRuns;
      });
    // 16 decode steps after the prefill's token: four runs of 4 when watched, one of 16 otherwise.
    expect(await runsFor(true)).toBe(4);
    expect(await runsFor(false)).toBe(1);
  });

  it('while requests wait for a row, runs can end at the first row\'s budget (decodeChunkMinSteps), with the same tokens', async () => {
    const jobs: Job[] = [
      { id: 'long', prompt: PROMPTS[0], params: { maxNewTokens: 20, ignoreEos: true } },
      { id: 'short', prompt: PROMPTS[1], params: { maxNewTokens: 4, ignoreEos: true } },
      { id: 'waiting', prompt: PROMPTS[2], params: { maxNewTokens: 6, ignoreEos: true } },
    ];
    const single = await alone(oneStep, jobs);
    /** How many tokens 'long' had when 'waiting' got its first. */
    const longTokensBeforeJoin = async (decodeChunkMinSteps: number) =>
      withEngine({ ...looped, prefillChunkTokens: 512, slots: 2, decodeChunkSteps: 16, decodeChunkMinSteps }, async (engine) => {
        let longTokens = 0;
        let atJoin = -1;
        const results = await Promise.all(jobs.map((job) => engine.submit(job, () => {
          if (job.id === 'long') longTokens += 1;
          if (job.id === 'waiting' && atJoin < 0) atJoin = longTokens;
        })));
        results.forEach((result) => expect(result.sequences).toEqual(single.get(result.id)?.sequences));
        return atJoin;
      });
    // Full runs: 'waiting' gets a row only after a 16-step run; shortened: when 'short' ends, 3 steps in.
    expect(await longTokensBeforeJoin(16)).toBe(17);
    expect(await longTokensBeforeJoin(2)).toBe(4);
  });

  it('seeded sampling gives the one-step tokens for the same seed, whatever the batch', async () => {
    const sampled: Job[] = [
      { id: 'topk', prompt: PROMPTS[0], params: { doSample: true, seed: 7, topK: 20, temperature: 1.3, maxNewTokens: 12, ignoreEos: true, numReturnSequences: 2 } },
      { id: 'topkp', prompt: PROMPTS[1], params: { doSample: true, seed: 8, topK: 50, topP: 0.8, temperature: 0.7, maxNewTokens: 12, ignoreEos: true } },
      { id: 'penalty', prompt: PROMPTS[4], params: { doSample: true, seed: 9, topK: 10, repetitionPenalty: 1.5, maxNewTokens: 12, ignoreEos: true } },
      { id: 'greedy-penalty', prompt: PROMPTS[3], params: { repetitionPenalty: 1.8, maxNewTokens: 12, ignoreEos: true } },
    ];
    const single = await alone(oneStep, sampled);
    const loopAlone = await alone(looped, sampled);
    const loopMixed = await staggered({ ...looped, slots: 3 }, [greedyJobs()[3], ...sampled], 1);
    for (const job of sampled) {
      expect(loopAlone.get(job.id)?.sequences).toEqual(single.get(job.id)?.sequences);
      expect(loopMixed.get(job.id)?.sequences).toEqual(single.get(job.id)?.sequences);
    }
  });

  it('at Falcon\'s vocabulary (tokens chosen over 32 groups of 2032) greedy and seeded tokens equal the one-step path', async () => {
    const work = fs.mkdtempSync(path.join(os.tmpdir(), 'falconq-falcon-vocab-'));
    const modelDir = path.join(work, 'model');
    const jobs: Job[] = [
      ...greedyJobs(2),
      { id: 'topk', prompt: PROMPTS[0], params: { doSample: true, seed: 7, topK: 40, temperature: 1.3, maxNewTokens: 10, ignoreEos: true } },
      { id: 'penalty', prompt: PROMPTS[4], params: { doSample: true, seed: 9, topK: 10, topP: 0.8, repetitionPenalty: 1.5, maxNewTokens: 10, ignoreEos: true } },
    ];
    try {
      await createRandomModel({ out: modelDir, shape: { ...TINY_SHAPE, vocabSize: 65024 } });
      const single = await alone({ ...oneStep, modelDir }, jobs);
      const loop = await staggered({ ...looped, modelDir, slots: 3 }, jobs, 2);
      for (const job of jobs) expect(loop.get(job.id)?.sequences).toEqual(single.get(job.id)?.sequences);
    } finally {
      fs.rmSync(work, { recursive: true, force: true });
    }
  });

  it('with dequantizeWeights the loop runs on weights dequantized at load and gives the same greedy and seeded tokens', async () => {
    // Accuracy level 0: the int4 kernels compute on the same dequantized values (level 4 quantizes activations to int8).
    const modelDir = await tinyModelDir({ accuracyLevel: 0 });
    const jobs: Job[] = [
      ...greedyJobs(4),
      { id: 'topk', prompt: PROMPTS[0], params: { doSample: true, seed: 7, topK: 20, temperature: 1.3, maxNewTokens: 12, ignoreEos: true } },
      { id: 'penalty', prompt: PROMPTS[4], params: { doSample: true, seed: 9, topK: 10, repetitionPenalty: 1.5, maxNewTokens: 12, ignoreEos: true } },
    ];
    const single = await alone({ ...oneStep, modelDir }, jobs);
    const dequantized = { ...looped, modelDir, dequantizeWeights: true };
    const loop = await staggered({ ...dequantized, slots: 3 }, jobs, 2);
    for (const job of jobs) expect(loop.get(job.id)?.sequences).toEqual(single.get(job.id)?.sequences);
    await withEngine({ ...dequantized, slots: 1 }, async (engine) => expect(engine.info).toMatchObject({ dequantizedWeights: true, cudaFpaIntbGemm: false }));
    await withEngine({ ...looped, modelDir, slots: 1 }, async (engine) => expect(engine.info.dequantizedWeights).toBe(false));
  });

  it('refuses dequantizeWeights that is not a boolean, without the decode loop, or on a model without that graph, saying why', async () => {
    await expect(withEngine({ ...looped, dequantizeWeights: 'yes' as never }, async () => undefined)).rejects.toThrow(/dequantizeWeights: must be true or false, got yes/);
    await expect(withEngine({ ...oneStep, dequantizeWeights: true }, async () => undefined)).rejects.toThrow(/dequantizeWeights: .*decodes one step per run \(set decodeChunkSteps above 1\)/);
    const floatWeights = await tinyModelDir({ weights: 'fp32' });
    await expect(withEngine({ ...looped, modelDir: floatWeights, dequantizeWeights: true }, async () => undefined)).rejects.toThrow(/no decode loop over dequantized weights \(its weights are fp32, not int4\)/);
    const work = fs.mkdtempSync(path.join(os.tmpdir(), 'falconq-no-dequantized-'));
    try {
      const source = await tinyModelDir();
      for (const name of fs.readdirSync(source)) fs.copyFileSync(path.join(source, name), path.join(work, name));
      const manifestPath = path.join(work, 'falconq.json');
      const manifest = JSON.parse(fs.readFileSync(manifestPath, 'utf8'));
      delete manifest.files.decodeLoopDequantized;
      fs.writeFileSync(manifestPath, JSON.stringify(manifest));
      await expect(withEngine({ ...looped, modelDir: work, dequantizeWeights: true }, async () => undefined)).rejects.toThrow(/no decode loop over dequantized weights \(converted by an older falconq: convert it again\)/);
    } finally {
      fs.rmSync(work, { recursive: true, force: true });
    }
  });

  it('without the sampler If (graph tuning sampler-if=0) the loop gives the same greedy and seeded tokens', async () => {
    const modelDir = await tinyModelDir({ tuning: { samplerIf: false } });
    const jobs: Job[] = [
      ...greedyJobs(3),
      { id: 'topk', prompt: PROMPTS[0], params: { doSample: true, seed: 7, topK: 20, temperature: 1.3, maxNewTokens: 12, ignoreEos: true } },
      { id: 'penalty', prompt: PROMPTS[4], params: { doSample: true, seed: 9, topK: 10, repetitionPenalty: 1.5, maxNewTokens: 12, ignoreEos: true } },
    ];
    const single = await alone(oneStep, jobs);
    const loop = await staggered({ ...looped, modelDir, slots: 3 }, jobs, 2);
    for (const job of jobs) expect(loop.get(job.id)?.sequences).toEqual(single.get(job.id)?.sequences);
  });

  it('a model converted before the written-positions outputs (whole presents fetched) gives the same tokens', async () => {
    const work = fs.mkdtempSync(path.join(os.tmpdir(), 'falconq-no-written-'));
    const source = await tinyModelDir();
    try {
      for (const name of fs.readdirSync(source)) fs.copyFileSync(path.join(source, name), path.join(work, name));
      const manifestPath = path.join(work, 'falconq.json');
      const manifest = JSON.parse(fs.readFileSync(manifestPath, 'utf8'));
      expect(manifest.decodeLoop.io.writtenKey).toBeDefined();
      delete manifest.decodeLoop.io.writtenKey;
      delete manifest.decodeLoop.io.writtenValue;
      fs.writeFileSync(manifestPath, JSON.stringify(manifest));
      const jobs = greedyJobs(3);
      const single = await alone(oneStep, jobs);
      const loop = await staggered({ ...looped, modelDir: work, slots: 2 }, jobs, 1);
      for (const job of jobs) expect(loop.get(job.id)?.sequences).toEqual(single.get(job.id)?.sequences);
    } finally {
      fs.rmSync(work, { recursive: true, force: true });
    }
  });

  it('a row sampling beyond the graph\'s candidates (top_k 0) decodes one step at a time, with the same tokens', async () => {
    const wide: Job = { id: 'wide', prompt: PROMPTS[2], params: { doSample: true, seed: 3, topK: 0, topP: 0.95, maxNewTokens: 8, ignoreEos: true } };
    const single = await alone(oneStep, [wide]);
    await withEngine({ ...looped, slots: 1 }, async (engine) => {
      expect((await engine.submit(wide)).sequences).toEqual(single.get('wide')?.sequences);
      expect(await engine.stats()).toMatchObject({ decodeSteps: 7, decodeRuns: 7 });
    });
  });

  it('eos, stop strings and max tokens end where the one-step path ends, with the same text', async () => {
    const tokenizer = Tokenizer.fromModelDir(await tinyModelDir());
    const free = (await alone(oneStep, [{ id: 'free', prompt: PROMPTS[1], params: { maxNewTokens: 12, ignoreEos: true } }])).get('free');
    const { tokens } = free?.sequences[0] ?? { tokens: [] };
    const stop = tokenizer.decode(tokens.slice(5, 7), { skipSpecialTokens: true });
    const jobs: Job[] = [
      { id: 'stop', prompt: PROMPTS[1], params: { maxNewTokens: 12, ignoreEos: true, stop: [stop] } },
      { id: 'eos', prompt: PROMPTS[0], params: { maxNewTokens: 200 } },
      { id: 'length', prompt: PROMPTS[4], params: { maxNewTokens: 7, ignoreEos: true } },
    ];
    const single = await alone(oneStep, jobs);
    const loop = await staggered({ ...looped, slots: 3 }, jobs, 1);
    for (const job of jobs) expect(loop.get(job.id)?.sequences).toEqual(single.get(job.id)?.sequences);
    expect(single.get('stop')?.sequences[0].finishReason).toBe('stop');
    expect(single.get('length')?.sequences[0].tokens).toHaveLength(7);
  });

  it('cancel during a run frees the row for the next request', async () => {
    const expected = (await alone(oneStep, [{ id: 'next', prompt: PROMPTS[2], params: { maxNewTokens: 6 } }])).get('next');
    await withEngine({ ...looped, slots: 1 }, async (engine) => {
      let tokens = 0;
      const long = engine.submit({ id: 'long', prompt: PROMPTS[0], params: { maxNewTokens: 1000, ignoreEos: true } }, () => {
        tokens += 1;
        if (tokens === 2) engine.cancel('long');
      });
      const next = engine.submit({ id: 'next', prompt: PROMPTS[2], params: { maxNewTokens: 6 } });
      const cancelled = await long;
      expect(cancelled.sequences[0].finishReason).toBe('cancelled');
      expect(cancelled.sequences[0].tokens.length).toBeLessThan(1000);
      expect((await next).sequences).toEqual(expected?.sequences);
      expect(await engine.stats()).toMatchObject({ activeSequences: 0, waitingRequests: 0, cancelledRequests: 1 });
    });
  });

  it('the fp16 (gpu-target) model gives the one-step tokens through the loop too, also over dequantized weights', async () => {
    // accuracy_level 0: onnxruntime's CPU kernel prepacks fp16 MatMulNBits weights for int8 activations in the main
    // graph but not in a Loop body, so at level 4 the two graphs compute differently on CPU (CUDA ignores the level).
    const modelDir = await tinyModelDir({ target: 'gpu', accuracyLevel: 0 });
    const jobs = greedyJobs(6).slice(0, 3);
    const single = await alone({ ...oneStep, modelDir }, jobs);
    const loop = await staggered({ ...looped, modelDir, slots: 3 }, jobs);
    // The same loop over fp16 weights dequantized at load (what a cuda worker runs with dequantizeWeights).
    const dequantized = await staggered({ ...looped, modelDir, slots: 3, dequantizeWeights: true }, jobs);
    for (const job of jobs) {
      expect(loop.get(job.id)?.sequences).toEqual(single.get(job.id)?.sequences);
      expect(dequantized.get(job.id)?.sequences).toEqual(single.get(job.id)?.sequences);
    }
  });

  it('auto takes the first execution provider that loads and says why (cpu here: no CUDA provider, no GPU adapter)', async () => {
    await withEngine({ executionProvider: 'auto', slots: 1 }, async (engine) => {
      expect(engine.info.requestedExecutionProvider).toBe('auto');
      // A machine with a software WebGPU adapter (e.g. Mesa lavapipe) lands on webgpu; CI has none.
      const expected = engine.info.executionProvider === 'webgpu'
        ? /^auto: webgpu loaded \(cuda: .*not installed.*falconq setup cuda/s
        : /^auto: cpu, no GPU provider loaded \(cuda: .*not installed.*falconq setup cuda.*webgpu: /s;
      expect(engine.info.executionProviderReason).toMatch(expected);
      expect(engine.info.decodeChunkSteps).toBe(1);
      expect((await engine.submit({ id: 'x', prompt: 'Hi', params: { maxNewTokens: 2 } })).sequences[0].tokens).toHaveLength(2);
    });
  });

  it('refuses an unknown cudaFpaIntbGemm, naming the option; on cpu the choice is recorded as off', async () => {
    await expect(withEngine({ cudaFpaIntbGemm: 'always' as never }, async () => undefined)).rejects.toThrow(/cudaFpaIntbGemm: must be one of auto, on, off, got always/);
    await withEngine({ cudaFpaIntbGemm: 'on', slots: 1 }, async (engine) => expect(engine.info.cudaFpaIntbGemm).toBe(false));
  });

  it('refuses an unknown prefillWarmUp, naming the option; on cpu it is off by default', async () => {
    await expect(withEngine({ prefillWarmUp: 'yes' as never }, async () => undefined)).rejects.toThrow(/prefillWarmUp: must be one of auto, on, off, got yes/);
    await withEngine({}, async (engine) => expect(engine.info.warmUp).toEqual({ runs: 0, ms: 0 }));
  });

  it('refuses a bad prefillRunCostTokens, naming the option; splits prefills by default only with the KV cache on the host', async () => {
    await expect(withEngine({ prefillRunCostTokens: -1 }, async () => undefined)).rejects.toThrow(/prefillRunCostTokens: must be a non-negative integer, got -1/);
    await withEngine({}, async (engine) => expect(engine.info.prefillRunCostTokens).toBe(256));
    await withEngine({ kvPlacement: 'device-merge' }, async (engine) => expect(engine.info.prefillRunCostTokens).toBeUndefined());
  });

  it('refuses a decode loop with a device KV placement, naming the option', async () => {
    await expect(withEngine({ kvPlacement: 'device', decodeChunkSteps: 4 }, async () => undefined)).rejects.toThrow(/decodeChunkSteps.*kvPlacement device/);
  });
});

describe('GenerationEngine after a failed model run', () => {
  // The failures are forced (a run that throws, then a recovery that throws): nothing real fails on demand.
  afterEach(() => jest.restoreAllMocks());

  it('fails the requests in flight and serves the next ones with a fresh runner', async () => {
    const { HostKvRunner } = await import('../src/runtime/host-kv-runner');
    const decode = jest.spyOn(HostKvRunner.prototype, 'decode').mockRejectedValueOnce(new Error('CUDA failure 2: out of memory'));
    await withEngine({ kvPlacement: 'host', slots: 2 }, async (engine) => {
      await expect(engine.submit({ id: 'a', prompt: PROMPTS[0], params: { maxNewTokens: 4 } })).rejects.toThrow(/out of memory/);
      decode.mockRestore();
      expect((await engine.submit({ id: 'b', prompt: PROMPTS[0], params: { maxNewTokens: 4, ignoreEos: true } })).sequences[0].tokens).toHaveLength(4);
    });
  });

  it('says it is closed, to every later call, when it cannot start afresh', async () => {
    const { HostKvRunner } = await import('../src/runtime/host-kv-runner');
    jest.spyOn(HostKvRunner.prototype, 'decode').mockRejectedValueOnce(new Error('CUDA failure 700: illegal address'));
    jest.spyOn(HostKvRunner.prototype, 'dispose').mockImplementationOnce(() => {
      throw new Error('device lost');
    });
    await withEngine({ kvPlacement: 'host', slots: 2 }, async (engine) => {
      await expect(engine.submit({ id: 'a', prompt: PROMPTS[0], params: { maxNewTokens: 4 } })).rejects.toThrow(/illegal address/);
      const later = engine.submit({ id: 'b', prompt: PROMPTS[0], params: { maxNewTokens: 4 } });
      await expect(later).rejects.toThrow(EngineClosedError);
      await expect(later).rejects.toThrow(/could not recover from a failed model run \(CUDA failure 700: illegal address\): device lost/);
      await expect(engine.stats()).rejects.toThrow(EngineClosedError);
    });
  });
});
