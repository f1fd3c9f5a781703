import type { GenerationParams, GenerationResult, TokenEvent } from '../api';
import { resolveGenerationParams } from '../params';
import { fakeDecoder } from '../testing/fake-runner';
import type { RowOutput } from './forward-runner';
import { OutputProcessor, type OutputProcessorOptions } from './output-processor';

const EOS = 39;
const VOCAB = 40;

function setup(params: Partial<GenerationParams>, options: Partial<OutputProcessorOptions> = {}) {
  let clock = 1000;
  const processor = new OutputProcessor({
    eosId: EOS,
    decoder: fakeDecoder,
    graphTopK: 8,
    graphCandidates: 0,
    forceFullLogits: false,
    now: () => (clock += 10),
    ...options,
  });
  const events: TokenEvent[] = [];
  const done: GenerationResult[] = [];
  const request = processor.open(
    { id: 'r', promptIds: [1, 2], promptText: 'PROMPT', params: resolveGenerationParams({ maxNewTokens: 10, ...params }), interactive: false, fallbackSeed: 5, submittedAt: 1000 },
    { onToken: (event) => events.push(event), onDone: (result) => done.push(result) },
  );
  return { processor, request, sequence: request.sequences[0], events, done };
}

/** A run's output for one row whose logits rank the ids in `order` first to last. */
function scores(order: number[], withFull = false): RowOutput {
  const logits = new Float32Array(VOCAB).fill(-10);
  order.forEach((id, rank) => (logits[id] = 5 - rank));
  const top = order.slice(0, 8);
  return { top: { ids: top, logits: top.map((id) => logits[id]) }, ...(withFull ? { full: logits } : {}) };
}

describe('OutputProcessor token choice', () => {
  it('a greedy row takes the runner\'s top token when it has one, else the argmax of the top-K', () => {
    const { processor, sequence } = setup({});
    expect(processor.chooseToken(sequence, { ...scores([7, 3, 1]), best: 3 })).toBe(3);
    expect(processor.chooseToken(sequence, scores([7, 3, 1]))).toBe(7);
  });

  it('a row that needs the full logits refuses a run that brought only the top-K', () => {
    const { processor, sequence } = setup({ repetitionPenalty: 1.3 });
    expect(sequence.needsFullLogits).toBe(true);
    expect(() => processor.chooseToken(sequence, scores([7, 3]))).toThrow(/full logits/);
    // The penalty applies to seen ids (the prompt's 1 and 2): a close second takes over from a penalised first.
    const close = scores([2, 3], true);
    (close.full as Float32Array)[3] = 4.9;
    expect(processor.chooseToken(sequence, close)).toBe(3);
  });

  it('seeded sampling draws the same tokens for the same seed, and other tokens for another sequence of the request', () => {
    const params = { doSample: true, seed: 11, topK: 8, temperature: 5, numReturnSequences: 2 };
    const draw = (index: number) => {
      const { processor, request } = setup(params);
      return Array.from({ length: 12 }, () => processor.chooseToken(request.sequences[index], scores([1, 2, 3, 4, 5, 6, 7, 8])));
    };
    expect(draw(0)).toEqual(draw(0));
    expect(draw(1)).not.toEqual(draw(0));
  });

  it('in-graph sampling takes the row\'s parameters and the uniforms its host sampler would draw next, one per step', () => {
    const { processor, sequence } = setup({ doSample: true, seed: 3, topK: 4, topP: 0.9, temperature: 0.7 }, { graphCandidates: 16 });
    expect(sequence.fitsGraphSampler).toBe(true);
    const sampling = processor.graphSampling(sequence, 5);
    expect(sampling).toMatchObject({ doSample: true, topK: 4, topP: 0.9, temperature: 0.7, repetitionPenalty: 1 });
    expect(sampling.uniforms).toHaveLength(5);
    expect(sampling.seen).toBe(sequence.seen);
    // The stream moved on: the next run's uniforms are the following ones.
    expect(Array.from(processor.graphSampling(sequence, 5).uniforms)).not.toEqual(Array.from(sampling.uniforms));
  });
});

describe('OutputProcessor stops and streaming', () => {
  it('streams each accepted token and finishes at max tokens with the text of them all', () => {
    const { processor, request, sequence, events, done } = setup({ maxNewTokens: 3, ignoreEos: true });
    expect(processor.fromScores(sequence, scores([4]))).toEqual({ accepted: 1, forced: 0, token: 4, finished: false });
    expect(processor.fromGraph(sequence, [5, 6, 7, 8])).toEqual({ accepted: 2, forced: 0, token: 6, finished: true });
    expect(events.map((event) => event.token)).toEqual([4, 5, 6]);
    processor.complete(request);
    expect(done).toEqual([{
      id: 'r',
      promptTokens: 2,
      sequences: [{ text: fakeDecoder.decode([4, 5, 6]), tokens: [4, 5, 6], finishReason: 'length' }],
      timeToFirstTokenMs: 10,
      totalMs: 20,
    }]);
    expect(events.map((event) => event.text).join('')).toBe(done[0].sequences[0].text);
  });

  it('finishes at eos (kept in tokens, not in text), unless ignoreEos', () => {
    const stopped = setup({});
    expect(stopped.processor.fromGraph(stopped.sequence, [4, EOS, 5])).toEqual({ accepted: 2, forced: 0, token: EOS, finished: true });
    expect(stopped.sequence.stopper).toMatchObject({ tokens: [4, EOS], text: fakeDecoder.decode([4]), finishReason: 'eos' });
    const ignoring = setup({ ignoreEos: true });
    expect(ignoring.processor.fromGraph(ignoring.sequence, [4, EOS, 5])).toEqual({ accepted: 3, forced: 0, token: 5, finished: false });
  });

  it('holds back text that may start a stop string, and ends the text before it', () => {
    // fakeDecoder: 1 -> 'b', 2 -> 'c', 3 -> 'dx', 4 -> 'e'.
    const { processor, request, sequence, events, done } = setup({ stop: ['cdx'], returnFullText: true });
    expect(processor.fromGraph(sequence, [1, 2])).toMatchObject({ finished: false });
    expect(events.map((event) => event.text)).toEqual(['b', '']);
    expect(processor.fromGraph(sequence, [3, 4])).toEqual({ accepted: 1, forced: 0, token: 3, finished: true });
    processor.complete(request);
    expect(done[0].sequences[0]).toMatchObject({ text: 'PROMPTb', tokens: [1, 2, 3], finishReason: 'stop' });
  });

  it('accepts nothing more once its request is cancelled, and ends it with the text so far', () => {
    const { processor, request, sequence, events, done } = setup({ ignoreEos: true });
    processor.fromGraph(sequence, [4, 5]);
    request.cancelled = true;
    expect(processor.fromGraph(sequence, [6, 7])).toEqual({ accepted: 0, forced: 0, token: -1, finished: false });
    processor.cancel(sequence);
    processor.complete(request);
    expect(events).toHaveLength(2);
    expect(done[0].sequences[0]).toMatchObject({ tokens: [4, 5], text: fakeDecoder.decode([4, 5]), finishReason: 'cancelled' });
  });

  it('records each token\'s logprob against the full logits it was chosen from', () => {
    const { processor, request, sequence, done } = setup({ logprobs: 2, maxNewTokens: 1 });
    const output = scores([9, 4, 6], true);
    processor.fromScores(sequence, output);
    processor.complete(request);
    const [entry] = done[0].sequences[0].logprobs ?? [];
    const logits = Array.from(output.full as Float32Array);
    const normalizer = Math.log(logits.reduce((sum, logit) => sum + Math.exp(logit), 0));
    expect(entry).toMatchObject({ token: 9, text: fakeDecoder.decode([9]) });
    expect(entry.logprob).toBeCloseTo(5 - normalizer, 6);
    expect(entry.top.map((alt) => alt.token)).toEqual([9, 4]);
  });
});
