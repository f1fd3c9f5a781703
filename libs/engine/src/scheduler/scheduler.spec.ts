import type { GenerationParams, GenerationResult, TokenEvent } from '../api';
import { resolveGenerationParams } from '../params';
import { FakeRunner, fakeDecoder } from '../testing/fake-runner';
import type { KvPlacement } from './forward-runner';
import { Scheduler, type SchedulerOptions } from './scheduler';

interface Arrival {
  id: string;
  prompt: number[];
  params?: Partial<GenerationParams>;
  /** Scheduler step at which it is submitted. */
  at?: number;
}

const EOS = 39;

async function simulate(
  arrivals: Arrival[],
  setup: { placement: KvPlacement; rows: number; options?: Partial<SchedulerOptions>; cancel?: { id: string; at: number } },
) {
  const runner = new FakeRunner({ placement: setup.placement, rows: setup.rows, vocabSize: 40, graphTopK: 8 });
  const scheduler = new Scheduler(runner, {
    prefillChunkTokens: 16,
    admission: 'continuous',
    forceFullLogits: false,
    eosId: EOS,
    decoder: fakeDecoder,
    ...setup.options,
  });
  const results = new Map<string, GenerationResult>();
  const events = new Map<string, TokenEvent[]>();
  let step = 0;
  const pending = [...arrivals];
  while (pending.length > 0 || !scheduler.idle) {
    for (const arrival of pending.filter((a) => (a.at ?? 0) <= step)) {
      pending.splice(pending.indexOf(arrival), 1);
      events.set(arrival.id, []);
      scheduler.enqueue(
        {
          id: arrival.id,
          promptIds: arrival.prompt,
          promptText: fakeDecoder.decode(arrival.prompt),
          params: resolveGenerationParams({ maxNewTokens: 12, ...arrival.params }),
          interactive: false,
          fallbackSeed: 1,
          submittedAt: 0,
        },
        { onToken: (event) => events.get(arrival.id)?.push(event), onDone: (result) => results.set(arrival.id, result) },
      );
    }
    if (setup.cancel && setup.cancel.at === step) scheduler.cancel(setup.cancel.id);
    await scheduler.step();
    step += 1;
    if (step > 10_000) throw new Error('scheduler does not finish');
  }
  return { results, events, runner, scheduler };
}

/** What a model with this runner's logits generates greedily, one token at a time, with no batching at all. */
function referenceGreedy(prompt: number[], maxNewTokens: number): number[] {
  const runner = new FakeRunner({ placement: 'host', rows: 1, vocabSize: 40 });
  const history = [...prompt];
  const out: number[] = [];
  while (out.length < maxNewTokens) {
    const logits = runner.logitsFor(history);
    let best = 0;
    for (let v = 1; v < logits.length; v++) if (logits[v] > logits[best]) best = v;
    out.push(best);
    history.push(best);
    if (best === EOS) break;
  }
  return out;
}

const prompts: number[][] = [
  [1, 2, 3],
  [4, 5, 6, 7, 8, 9, 10, 11],
  [12],
  Array.from({ length: 40 }, (_, i) => (i * 7) % 38), // longer than the 16-token prefill budget: chunked
  [13, 14, 15, 16, 17],
];

describe.each<KvPlacement>(['host', 'device'])('Scheduler (%s KV)', (placement) => {
  it('greedy output of each prompt is the same alone and in a batch of mixed-length prompts joining at different times', async () => {
    const alone = await Promise.all(prompts.map(async (prompt, i) => (await simulate([{ id: `p${i}`, prompt }], { placement, rows: 1 })).results.get(`p${i}`)));
    const together = (await simulate(
      prompts.map((prompt, i) => ({ id: `p${i}`, prompt, at: [0, 0, 3, 5, 9][i] })),
      { placement, rows: 3 },
    )).results;
    prompts.forEach((prompt, i) => {
      const expected = referenceGreedy(prompt, 12);
      expect(alone[i]?.sequences[0].tokens).toEqual(expected);
      expect(together.get(`p${i}`)?.sequences[0].tokens).toEqual(expected);
    });
  });

  it('seeded sampling is reproducible and independent of the batch', async () => {
    const params = { doSample: true, seed: 1234, temperature: 1.5, topK: 8, numReturnSequences: 2 };
    const alone = (await simulate([{ id: 's', prompt: [3, 1, 4], params }], { placement, rows: 2 })).results.get('s');
    const crowded = (await simulate(
      [
        { id: 'other', prompt: [9, 9, 9, 9], params: { doSample: true, topK: 8 } },
        { id: 's', prompt: [3, 1, 4], params, at: 2 },
        { id: 'late', prompt: [1], at: 4 },
      ],
      { placement, rows: 3 },
    )).results.get('s');
    expect(crowded?.sequences).toEqual(alone?.sequences);
    expect(alone?.sequences[0].tokens).not.toEqual(alone?.sequences[1].tokens);
  });

  it('stops at maxNewTokens, at eos, and at stop strings exactly', async () => {
    const reference = referenceGreedy([1, 2, 3], 12);
    const { results } = await simulate(
      [
        { id: 'len', prompt: [1, 2, 3], params: { maxNewTokens: 5 } },
        { id: 'stop', prompt: [1, 2, 3], params: { stop: [fakeDecoder.decode(reference.slice(2, 4))] } },
      ],
      { placement, rows: 2 },
    );
    expect(results.get('len')?.sequences[0]).toMatchObject({ tokens: reference.slice(0, 5), finishReason: 'length' });
    const stopped = results.get('stop')?.sequences[0];
    expect(stopped?.finishReason).toBe('stop');
    expect(stopped?.tokens).toEqual(reference.slice(0, 4));
    expect(stopped?.text).toBe(fakeDecoder.decode(reference.slice(0, 2)));
  });

  it('finishes at eos unless ignoreEos', async () => {
    // Search a prompt whose greedy continuation hits eos early.
    let prompt: number[] = [];
    for (let a = 0; a < 38 && prompt.length === 0; a++) {
      for (let b = 0; b < 38; b++) {
        if (referenceGreedy([a, b], 10).includes(EOS)) {
          prompt = [a, b];
          break;
        }
      }
    }
    expect(prompt.length).toBe(2);
    const expected = referenceGreedy(prompt, 10);
    const { results } = await simulate(
      [
        { id: 'eos', prompt, params: { maxNewTokens: 10 } },
        { id: 'ignore', prompt, params: { maxNewTokens: 10, ignoreEos: true } },
      ],
      { placement, rows: 2 },
    );
    expect(results.get('eos')?.sequences[0]).toMatchObject({ tokens: expected, finishReason: 'eos' });
    expect(results.get('ignore')?.sequences[0].tokens.length).toBe(10);
  });

  it('cancel ends the request and frees its row for the next one', async () => {
    const { results, runner } = await simulate(
      [
        { id: 'long', prompt: [1, 2], params: { maxNewTokens: 200, ignoreEos: true } },
        { id: 'next', prompt: [5, 6], at: 1 },
      ],
      { placement, rows: 1, cancel: { id: 'long', at: 4 } },
    );
    expect(results.get('long')?.sequences[0].finishReason).toBe('cancelled');
    expect(results.get('long')?.sequences[0].tokens.length).toBeLessThan(10);
    expect(results.get('next')?.sequences[0].tokens).toEqual(referenceGreedy([5, 6], 12));
    expect(runner.calls.length).toBeLessThan(40);
  });

  it('streams every generated token once, in order', async () => {
    const { results, events } = await simulate([{ id: 'a', prompt: [1, 2, 3] }], { placement, rows: 1 });
    expect(events.get('a')?.map((event) => event.token)).toEqual(results.get('a')?.sequences[0].tokens);
    expect(events.get('a')?.map((event) => event.text).join('')).toBe(results.get('a')?.sequences[0].text);
  });

  it('static admission waits for the whole batch to finish', async () => {
    const { runner } = await simulate(
      [
        { id: 'a', prompt: [1], params: { maxNewTokens: 3, ignoreEos: true } },
        { id: 'b', prompt: [2], params: { maxNewTokens: 8, ignoreEos: true } },
        { id: 'c', prompt: [3], at: 1, params: { maxNewTokens: 2, ignoreEos: true } },
      ],
      { placement, rows: 2, options: { admission: 'static' } },
    );
    const decodeRows = runner.calls.filter((call) => call.kind === 'decode').map((call) => call.rows.length);
    // c never joins the running batch: every decode runs a, b, or b alone, then c alone.
    expect(decodeRows.slice(0, 2)).toEqual([2, 2]);
    expect(decodeRows.at(-1)).toBe(1);
    expect(decodeRows.filter((n) => n === 2).length).toBeLessThanOrEqual(3);
  });
});

describe('Scheduler prefill (host KV)', () => {
  it('prefills a long prompt in chunks while other rows keep decoding', async () => {
    const { runner } = await simulate(
      [
        { id: 'short', prompt: [1, 2], params: { maxNewTokens: 30, ignoreEos: true } },
        { id: 'long', prompt: Array.from({ length: 50 }, (_, i) => i % 30), at: 2 },
      ],
      { placement: 'host', rows: 2 },
    );
    const kinds = runner.calls.map((call) => `${call.kind}:${call.tokens}`);
    expect(kinds.slice(0, 10)).toEqual(['prefill:2', 'decode:1', 'decode:1', 'prefill:16', 'decode:1', 'extend:16', 'decode:1', 'extend:16', 'decode:1', 'extend:2']);
  });

  it('fetches the full logits only on steps where a row needs them', async () => {
    const { runner, scheduler } = await simulate(
      [
        { id: 'greedy', prompt: [1, 2], params: { maxNewTokens: 10, ignoreEos: true } },
        { id: 'penalty', prompt: [3, 4], params: { maxNewTokens: 3, repetitionPenalty: 1.3, ignoreEos: true }, at: 3 },
      ],
      { placement: 'host', rows: 2 },
    );
    const decodes = runner.calls.filter((call) => call.kind === 'decode');
    expect(decodes.map((call) => call.fullLogits)).toEqual([false, false, false, true, true, false, false, false, false]);
    expect(scheduler.stats().fullLogitsSteps).toBe(2);
  });
});

describe('Scheduler logprobs', () => {
  it('reports each generated token\'s log-probability under the full logits of its own history, with its top alternatives', async () => {
    const prompt = [1, 2, 3];
    const { results, runner } = await simulate(
      [
        { id: 'scored', prompt, params: { maxNewTokens: 6, ignoreEos: true, logprobs: 3 } },
        { id: 'plain', prompt: [4, 5], params: { maxNewTokens: 6, ignoreEos: true } },
      ],
      { placement: 'host', rows: 2 },
    );
    const [sequence] = results.get('scored')!.sequences;
    expect(sequence.logprobs).toHaveLength(sequence.tokens.length);
    const history = [...prompt];
    sequence.logprobs!.forEach((entry, i) => {
      // Independent float64 log-softmax of the runner's logits for this exact history.
      const logits = Array.from(runner.logitsFor(history));
      const max = Math.max(...logits);
      const normalizer = max + Math.log(logits.reduce((sum, l) => sum + Math.exp(l - max), 0));
      const order = logits.map((_, id) => id).sort((a, b) => logits[b] - logits[a] || a - b);
      expect(entry.token).toBe(sequence.tokens[i]);
      expect(entry.logprob).toBeCloseTo(logits[entry.token] - normalizer, 6);
      expect(entry.top.map((alt) => alt.token)).toEqual(order.slice(0, 3));
      entry.top.forEach((alt) => expect(alt.logprob).toBeCloseTo(logits[alt.token] - normalizer, 6));
      expect(entry.text).toBe(fakeDecoder.decode([entry.token]));
      history.push(sequence.tokens[i]);
    });
    expect(results.get('plain')!.sequences[0].logprobs).toBeUndefined();
    // Rows asking for logprobs need the normalizer over the whole vocabulary: those steps fetch the full logits.
    expect(runner.calls.filter((call) => call.kind === 'decode').some((call) => call.fullLogits)).toBe(true);
  });
});

describe('Scheduler prompt logprobs (teacher forcing)', () => {
  /** Independent float64 log-softmax of the fake runner's logits for one history. */
  const logSoftmaxOf = (runner: FakeRunner, history: number[]) => {
    const logits = Array.from(runner.logitsFor(history));
    const max = Math.max(...logits);
    const normalizer = max + Math.log(logits.reduce((sum, l) => sum + Math.exp(l - max), 0));
    return logits.map((l) => l - normalizer);
  };
  const prompt = [5, 17, 2, 30, 8, 11];

  it.each<KvPlacement>(['host', 'device'])('%s KV: each prompt token gets its log-probability given the tokens before it (the first none), then generation goes on as without', async (placement) => {
    const { results, runner, scheduler } = await simulate(
      [
        { id: 'scored', prompt, params: { maxNewTokens: 4, ignoreEos: true, logprobs: 3, promptLogprobs: true } },
        { id: 'plain', prompt: [4, 5], params: { maxNewTokens: 6, ignoreEos: true }, at: 1 },
      ],
      { placement, rows: 2 },
    );
    const [sequence] = results.get('scored')!.sequences;
    const scored = sequence.promptLogprobs!;
    expect(scored).toHaveLength(prompt.length);
    expect(scored[0]).toEqual({ token: prompt[0], text: fakeDecoder.decode([prompt[0]]), logprob: null, top: null });
    for (let i = 1; i < prompt.length; i++) {
      const expected = logSoftmaxOf(runner, prompt.slice(0, i));
      const order = expected.map((_, id) => id).sort((a, b) => expected[b] - expected[a] || a - b);
      expect(scored[i].token).toBe(prompt[i]);
      expect(scored[i].text).toBe(fakeDecoder.decode([prompt[i]]));
      expect(scored[i].logprob).toBeCloseTo(expected[prompt[i]], 6);
      expect(scored[i].top!.map((alt) => alt.token)).toEqual(order.slice(0, 3));
      scored[i].top!.forEach((alt) => expect(alt.logprob).toBeCloseTo(expected[alt.token], 6));
    }
    // Generation after the forced prompt: the same greedy tokens as a plain run, with their own logprobs.
    expect(sequence.tokens).toEqual(referenceGreedy(prompt, 4));
    expect(sequence.logprobs!.map((entry) => entry.token)).toEqual(sequence.tokens);
    expect(results.get('plain')!.sequences[0].tokens).toEqual(referenceGreedy([4, 5], 6));
    expect(results.get('plain')!.sequences[0].promptLogprobs).toBeUndefined();
    // The prompt cost one step per token: the first prefilled, the rest fed through decode.
    expect(scheduler.stats()).toMatchObject({ promptTokens: prompt.length + 2, generatedTokens: 4 + 6 });
  });

  it('with maxNewTokens 0 scores the prompt and generates nothing; a one-token prompt gets its null entry only', async () => {
    const { results, runner } = await simulate(
      [
        { id: 'scored', prompt, params: { maxNewTokens: 0, logprobs: 0, promptLogprobs: true } },
        { id: 'single', prompt: [9], params: { maxNewTokens: 0, logprobs: 2, promptLogprobs: true } },
      ],
      { placement: 'host', rows: 2 },
    );
    const [sequence] = results.get('scored')!.sequences;
    expect(sequence).toMatchObject({ tokens: [], finishReason: 'length', logprobs: [] });
    expect(sequence.promptLogprobs!.map((entry) => entry.token)).toEqual(prompt);
    expect(sequence.promptLogprobs!.slice(1).every((entry) => entry.top!.length === 0)).toBe(true);
    expect(sequence.promptLogprobs![prompt.length - 1].logprob).toBeCloseTo(logSoftmaxOf(runner, prompt.slice(0, -1))[prompt.at(-1)!], 6);
    expect(results.get('single')!.sequences[0]).toMatchObject({ tokens: [], finishReason: 'length', promptLogprobs: [{ token: 9, logprob: null, top: null }] });
    // No run was made for a token after the prompt: the row saw the prompt but its last token.
    expect(runner.calls.filter((call) => call.kind === 'decode')).toHaveLength(prompt.length - 2);
  });

  it('never takes the decode loop: a scoring row decodes one step per run', async () => {
    const runner = new FakeRunner({ placement: 'host', rows: 1, vocabSize: 40, graphTopK: 8 });
    Object.assign(runner, { chunkCandidates: 8, decodeChunk: () => Promise.reject(new Error('a prompt-scoring row went through the decode loop')) });
    const scheduler = new Scheduler(runner, { prefillChunkTokens: 16, admission: 'continuous', forceFullLogits: false, eosId: EOS, decoder: fakeDecoder, decodeChunkSteps: 8 });
    let result: GenerationResult | undefined;
    scheduler.enqueue(
      { id: 'scored', promptIds: prompt, promptText: '', params: resolveGenerationParams({ maxNewTokens: 3, ignoreEos: true, logprobs: 1, promptLogprobs: true }), interactive: false, fallbackSeed: 0, submittedAt: 0 },
      { onDone: (done) => (result = done) },
    );
    while (!scheduler.idle) await scheduler.step();
    expect(result!.sequences[0].promptLogprobs).toHaveLength(prompt.length);
    expect(result!.sequences[0].tokens).toEqual(referenceGreedy(prompt, 3));
    expect(runner.calls.filter((call) => call.kind === 'decode').every((call) => call.fullLogits)).toBe(true);
  });
});

describe('Scheduler cancel', () => {
  it('a cancel that arrives while a model call runs takes effect when it returns, without emitting more tokens', async () => {
    const runner = new FakeRunner({ placement: 'host', rows: 2 });
    const scheduler = new Scheduler(runner, { prefillChunkTokens: 16, admission: 'continuous', forceFullLogits: false, eosId: EOS, decoder: fakeDecoder });
    const tokens: number[] = [];
    let result: GenerationResult | undefined;
    scheduler.enqueue(
      { id: 'a', promptIds: [1, 2], promptText: '', params: resolveGenerationParams({ maxNewTokens: 50, ignoreEos: true }), interactive: false, fallbackSeed: 0, submittedAt: 0 },
      { onToken: (event) => tokens.push(event.token), onDone: (done) => (result = done) },
    );
    await scheduler.step();
    await scheduler.step();
    const decode = runner.decode.bind(runner);
    runner.decode = async (entries, full) => {
      scheduler.cancel('a');
      return decode(entries, full);
    };
    const emittedBefore = tokens.length;
    await scheduler.step();
    expect(tokens.length).toBe(emittedBefore);
    expect(result?.sequences[0]).toMatchObject({ finishReason: 'cancelled', tokens: tokens });
    expect(scheduler.idle).toBe(true);
    expect(scheduler.stats()).toMatchObject({ activeSequences: 0, cancelledRequests: 1 });
  });
});

describe('Scheduler join groups (joins by prefill)', () => {
  // Row 0 decodes a long generation; newcomers arrive one per step and join while it decodes.
  const arrivals: Arrival[] = [
    { id: 'long', prompt: [1, 2, 3], params: { maxNewTokens: 30, ignoreEos: true } },
    ...[1, 2, 3, 4, 5].map((i) => ({ id: `n${i}`, prompt: [i, i + 1], params: { maxNewTokens: 4, ignoreEos: true }, at: i })),
  ];
  const prefillGroups = (runner: FakeRunner) => runner.calls.filter((call) => call.kind === 'prefill').map((call) => call.rows.length);

  it('prefills newcomers together once joinGroup wait, and alone after joinMaxWaitSteps', async () => {
    const eager = await simulate(arrivals, { placement: 'host', rows: 8 });
    expect(prefillGroups(eager.runner)).toEqual([1, 1, 1, 1, 1, 1]);

    const grouped = await simulate(arrivals, { placement: 'host', rows: 8, options: { joinGroup: 3, joinMaxWaitSteps: 10 } });
    // 'long' starts alone (nothing decodes yet); n1..n3 go together; n4 and n5 wait for a third until the limit.
    expect(prefillGroups(grouped.runner)).toEqual([1, 3, 2]);
    const firstPrefillStep = (runner: FakeRunner, row: number) => runner.calls.findIndex((call) => call.kind === 'prefill' && call.rows.includes(row));
    expect(firstPrefillStep(grouped.runner, 4)).toBeGreaterThan(firstPrefillStep(eager.runner, 4));

    const bounded = await simulate(arrivals, { placement: 'host', rows: 8, options: { joinGroup: 8, joinMaxWaitSteps: 2 } });
    // Nobody waits more than 2 steps for a group that never fills.
    expect(prefillGroups(bounded.runner).slice(1).every((size) => size <= 3)).toBe(true);
    expect(prefillGroups(bounded.runner).reduce((a, b) => a + b, 0)).toBe(6);
  });

  it('groups change when tokens come, not which tokens', async () => {
    const eager = await simulate(arrivals, { placement: 'host', rows: 8 });
    const grouped = await simulate(arrivals, { placement: 'host', rows: 8, options: { joinGroup: 4, joinMaxWaitSteps: 6 } });
    for (const { id } of arrivals) expect(grouped.results.get(id)?.sequences[0].tokens).toEqual(eager.results.get(id)?.sequences[0].tokens);
  });
});
