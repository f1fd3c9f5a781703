import { tinyModelDir, tinyModelReference } from '../support/tiny-model';
import { OnnxFalcon, relativeError } from './onnx-runner';

// int4 models are checked with accuracy_level 0 (MatMulNBits computes in fp32 on the dequantized weights), so any
// layout or scale mistake shows; accuracy_level 4 (int8 activations, the default build) has its own looser test.
const TOLERANCE = { fp32: 1e-5, int4: 1e-5 } as const;
const PROMPTS = [
  [40, 300, 77, 120, 5, 260, 301, 88, 11, 150],
  [61, 62, 63],
  [200, 201, 202, 203, 204, 205],
];
const DECODE_STEPS = 4;

describe.each(['fp32', 'int4'] as const)('ONNX tiny Falcon vs the float64 reference (%s weights)', (weights) => {
  let model: OnnxFalcon;
  beforeAll(async () => {
    model = await OnnxFalcon.load(await tinyModelDir({ weights, accuracyLevel: 0 }));
  });
  const reference = () => tinyModelReference({ weights });

  it('matches for one prompt, including decode steps with the KV cache', async () => {
    const prompt = PROMPTS[0];
    const { prefillLogits, stepLogits, tokens } = await model.generate([prompt], DECODE_STEPS);
    expect(relativeError(prefillLogits[0], reference().logits(prompt))).toBeLessThan(TOLERANCE[weights]);
    for (let step = 0; step < DECODE_STEPS; step++) {
      const sequence = [...prompt, ...tokens[0].slice(0, step + 1)];
      expect(relativeError(stepLogits[step][0], reference().logits(sequence))).toBeLessThan(TOLERANCE[weights]);
    }
  });

  it('matches for a right-padded batch of prompts of different lengths, prefill and decode', async () => {
    const { prefillLogits, stepLogits, tokens } = await model.generate(PROMPTS, DECODE_STEPS);
    PROMPTS.forEach((prompt, row) => {
      expect(relativeError(prefillLogits[row], reference().logits(prompt))).toBeLessThan(TOLERANCE[weights]);
      for (let step = 0; step < DECODE_STEPS; step++) {
        const sequence = [...prompt, ...tokens[row].slice(0, step + 1)];
        expect(relativeError(stepLogits[step][row], reference().logits(sequence))).toBeLessThan(TOLERANCE[weights]);
      }
    });
  });

  it('gives each row the same greedy tokens alone as in the batch', async () => {
    const batched = await model.generate(PROMPTS, DECODE_STEPS);
    for (const [row, prompt] of PROMPTS.entries()) {
      const alone = await model.generate([prompt], DECODE_STEPS);
      expect(batched.tokens[row]).toEqual(alone.tokens[0]);
    }
  });
});

test('the fp32 tiny model generates the reference\'s greedy tokens', async () => {
  const model = await OnnxFalcon.load(await tinyModelDir({ weights: 'fp32' }));
  const { tokens } = await model.generate([PROMPTS[0]], 12);
  expect(tokens[0]).toEqual(tinyModelReference({ weights: 'fp32' }).greedy(PROMPTS[0], 12));
});

test('with accuracy_level 4 (int8 activations) the int4 model stays close to the dequantized reference', async () => {
  const model = await OnnxFalcon.load(await tinyModelDir({ weights: 'int4' }));
  const { prefillLogits } = await model.generate(PROMPTS, 0);
  PROMPTS.forEach((prompt, row) => {
    const error = relativeError(prefillLogits[row], tinyModelReference({ weights: 'int4' }).logits(prompt));
    expect(error).toBeLessThan(5e-2);
    // ...and far closer to it than to the reference on the original (unquantized) weights.
    expect(error).toBeLessThan(relativeError(prefillLogits[row], tinyModelReference({ weights: 'fp32' }).logits(prompt)) / 5);
  });
});

test.each(['fp32', 'int4'] as const)('greedy decoding of the %s tiny model wanders instead of repeating one token', async (weights) => {
  const model = await OnnxFalcon.load(await tinyModelDir({ weights }));
  const { tokens } = await model.generate(PROMPTS, 40);
  for (const generated of tokens) {
    let run = 1;
    let longestRun = 1;
    for (let i = 1; i < generated.length; i++) longestRun = Math.max(longestRun, (run = generated[i] === generated[i - 1] ? run + 1 : 1));
    expect(new Set(generated).size).toBeGreaterThan(10);
    expect(longestRun).toBeLessThan(10);
  }
});

test('the gpu variant (fp16 activations, fp32 logits via Cast) runs on the CPU EP close to the reference', async () => {
  const ort = await import('onnxruntime-node');
  const path = await import('node:path');
  const dir = await tinyModelDir({ target: 'gpu', accuracyLevel: 0 });
  const session = await ort.InferenceSession.create(path.join(dir, 'model.onnx'));
  const prompt = PROMPTS[0];
  const feeds: Record<string, InstanceType<typeof ort.Tensor>> = {
    input_ids: new ort.Tensor('int64', BigInt64Array.from(prompt, BigInt), [1, prompt.length]),
    attention_mask: new ort.Tensor('int64', BigInt64Array.from(prompt, () => 1n), [1, prompt.length]),
  };
  for (let layer = 0; layer < 2; layer++) {
    for (const kind of ['key', 'value']) feeds[`past_key_values.${layer}.${kind}`] = new ort.Tensor('float16', new Uint16Array(0), [1, 1, 0, 16]);
  }
  const output = await session.run(feeds);
  expect(output.logits.type).toBe('float32');
  expect(output['present.0.key'].type).toBe('float16');
  // fp16 activations and scales: about 1e-3.
  expect(relativeError(output.logits.data as Float32Array, tinyModelReference({ weights: 'int4' }).logits(prompt))).toBeLessThan(1e-2);
});
