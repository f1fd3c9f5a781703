import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  convertCheckpoint, FalconReference, hfTensor, inspectModel, MANIFEST_FILE, ModelInputError, parseFalconConfig, randomFalconTensors,
  readManifest, referenceWeightsFromCheckpoint, TINY_SHAPE, writeSafetensors, writeTinyCheckpoint,
} from '@app/model';
import { OnnxFalcon, relativeError } from './onnx-runner';

let work: string;
beforeAll(() => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'falconq-convert-'));
});
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

const PROMPTS = [[40, 300, 77, 120, 5, 260], [61, 62, 63]];

async function expectParity(modelDir: string, checkpointDir: string, int4BlockSize: number | undefined, tolerance: number) {
  const reference = new FalconReference(referenceWeightsFromCheckpoint(checkpointDir, { int4BlockSize }));
  const model = await OnnxFalcon.load(modelDir);
  const { prefillLogits, stepLogits, tokens } = await model.generate(PROMPTS, 2);
  PROMPTS.forEach((prompt, row) => {
    expect(relativeError(prefillLogits[row], reference.logits(prompt))).toBeLessThan(tolerance);
    expect(relativeError(stepLogits[1][row], reference.logits([...prompt, ...tokens[row]]))).toBeLessThan(tolerance);
  });
}

function siblings(out: string): string[] {
  return fs.readdirSync(path.dirname(out)).filter((name) => name.startsWith(path.basename(out)));
}

describe('convertCheckpoint', () => {
  it('converts an RW-named, sharded BF16 checkpoint (fp32 weights) that matches the reference', async () => {
    const source = path.join(work, 'rw-bf16');
    writeTinyCheckpoint(source, { seed: 3, dtype: 'BF16', shards: 3, configNaming: 'rw', shape: { ...TINY_SHAPE, ffnHiddenSize: 4 * TINY_SHAPE.hiddenSize } });
    const out = path.join(work, 'rw-bf16-onnx');
    const progress: string[] = [];
    const result = await convertCheckpoint(source, { out, weights: 'fp32', onProgress: (stage, done, total) => progress.push(`${stage}:${done}/${total}`) });
    expect(result.manifest.shape).toMatchObject({ hiddenSize: 64, numHeads: 4, numKvHeads: 1, numLayers: 2, ffnHiddenSize: 256 });
    expect(progress.at(-1)).toBe('graph:1/1');
    expect(progress.some((entry) => /^weights:\d+\/\d+$/.test(entry))).toBe(true);
    await expectParity(out, source, undefined, 1e-5);
  });

  it('converts an F16 checkpoint with an untied lm_head to int4 (separate int4 embedding)', async () => {
    const source = path.join(work, 'f16-untied');
    writeTinyCheckpoint(source, { seed: 4, dtype: 'F16', untiedLmHead: true });
    const out = path.join(work, 'f16-untied-onnx');
    const { manifest } = await convertCheckpoint(source, { out, weights: 'int4', blockSize: 16, accuracyLevel: 0 });
    expect(manifest.weights.quantization).toEqual({ method: 'rtn-symmetric', bits: 4, blockSize: 16, accuracyLevel: 0 });
    await expectParity(out, source, 16, 1e-5);
  });

  it('fuses QKV and MLP-up into one MatMulNBits holding exactly the separate weights (same logits and tokens)', async () => {
    const source = path.join(work, 'fused');
    writeTinyCheckpoint(source, { seed: 5, dtype: 'F16' });
    const fused = path.join(work, 'fused-onnx');
    const separate = path.join(work, 'separate-onnx');
    await convertCheckpoint(source, { out: fused, weights: 'int4', accuracyLevel: 0 });
    await convertCheckpoint(source, { out: separate, weights: 'int4', accuracyLevel: 0, tuning: { fuseInputProjections: false } });
    const layers = TINY_SHAPE.numLayers;
    expect(inspectModel(fused).ops['com.microsoft::MatMulNBits']).toBe(3 * layers + 1);
    expect(inspectModel(fused).ops.Split).toBe(layers);
    expect(inspectModel(separate).ops['com.microsoft::MatMulNBits']).toBe(4 * layers + 1);
    expect(inspectModel(separate).ops.Split).toBeUndefined();
    const [a, b] = await Promise.all([fused, separate].map(async (dir) => (await OnnxFalcon.load(dir)).generate(PROMPTS, 3)));
    expect(a.tokens).toEqual(b.tokens);
    PROMPTS.forEach((_, row) => expect(relativeError(a.prefillLogits[row], b.prefillLogits[row])).toBeLessThan(1e-6));
    await expectParity(fused, source, 32, 1e-5);
  });

  it('writes the same bytes when reading in small chunks (chunk boundaries inside matrices)', async () => {
    const source = path.join(work, 'chunks');
    writeTinyCheckpoint(source, { seed: 8, dtype: 'BF16' });
    for (const weights of ['int4', 'fp32'] as const) {
      const whole = path.join(work, `chunks-${weights}-whole`);
      const chunked = path.join(work, `chunks-${weights}-chunked`);
      await convertCheckpoint(source, { out: whole, weights });
      await convertCheckpoint(source, { out: chunked, weights, chunkElements: 1000 });
      expect(fs.readFileSync(path.join(chunked, 'model.onnx.data')).equals(fs.readFileSync(path.join(whole, 'model.onnx.data')))).toBe(true);
      expect(fs.readFileSync(path.join(chunked, 'model.onnx')).equals(fs.readFileSync(path.join(whole, 'model.onnx')))).toBe(true);
    }
  });

  it('stores float weights in the activation type: fp16 for gpu, fp32 for cpu, and says so otherwise', async () => {
    const source = path.join(work, 'float-weights');
    writeTinyCheckpoint(source, { seed: 2 });
    const { manifest } = await convertCheckpoint(source, { out: path.join(work, 'float-weights-fp16'), weights: 'fp16', target: 'gpu' });
    expect(manifest.weights).toEqual({ dtype: 'fp16' });
    expect(inspectModel(path.join(work, 'float-weights-fp16')).ops.MatMul).toBe(9);
    await expect(convertCheckpoint(source, { out: path.join(work, 'float-weights-bad'), weights: 'fp16', target: 'cpu' }))
      .rejects.toThrow('--weights fp16 needs --target gpu (cpu runs fp32 activations); use --weights fp32 or int4');
    await expect(convertCheckpoint(source, { out: path.join(work, 'float-weights-bad'), blockSize: 48 })).rejects.toThrow(/--block-size: block size 48 must be a power of 2/);
  });

  it('fills every manifest field', async () => {
    const source = path.join(work, 'manifest');
    writeTinyCheckpoint(source, { seed: 5 });
    const out = path.join(work, 'manifest-onnx');
    await convertCheckpoint(source, { out, target: 'gpu' });
    const manifest = readManifest(out);
    expect(manifest).toMatchObject({
      format: 'falconq-model', formatVersion: 1, architecture: 'falcon', activations: 'fp16', kvDType: 'fp16', target: 'gpu',
      executionProviders: ['webgpu', 'cuda'], tokens: { eos: 11, bos: 11, pad: 11 },
      files: { model: 'model.onnx', weights: 'model.onnx.data', tokenizer: 'tokenizer.json', tokenizerConfig: 'tokenizer_config.json' },
      source: { kind: 'local', id: path.resolve(source) },
      io: { inputIds: 'input_ids', attentionMask: 'attention_mask', logits: 'logits', topLogits: 'top_logits', topIds: 'top_ids', topK: 64 },
    });
    expect(manifest.sizeBytes).toBeGreaterThan(fs.statSync(path.join(out, 'model.onnx.data')).size);
    expect(Date.parse(manifest.createdAt)).not.toBeNaN();
    expect(fs.readFileSync(path.join(out, 'tokenizer.json'))).toEqual(fs.readFileSync(path.join(source, 'tokenizer.json')));
  });

  it('refuses to overwrite a converted model without force, replaces it with force, and leaves no partial directory', async () => {
    const source = path.join(work, 'atomic');
    writeTinyCheckpoint(source, { seed: 6 });
    const out = path.join(work, 'atomic-onnx');
    await convertCheckpoint(source, { out, weights: 'fp32' });
    const first = readManifest(out).createdAt;
    await expect(convertCheckpoint(source, { out })).rejects.toThrow(/already holds a converted model; pass --force/);
    await convertCheckpoint(source, { out, force: true });
    expect(readManifest(out).createdAt).not.toBe(first);
    expect(readManifest(out).weights.dtype).toBe('int4');
    expect(siblings(out)).toEqual(['atomic-onnx']);
  });

  it('removes partial directories left by a dead build, keeps those of a running one', async () => {
    const source = path.join(work, 'stale');
    writeTinyCheckpoint(source, { seed: 7 });
    const out = path.join(work, 'stale-onnx');
    const dead = `${out}.partial-999999999`;
    const alive = `${out}.partial-${process.ppid}`;
    fs.mkdirSync(dead);
    fs.mkdirSync(alive);
    await convertCheckpoint(source, { out });
    expect(fs.existsSync(dead)).toBe(false);
    expect(fs.existsSync(alive)).toBe(true);
    fs.rmSync(alive, { recursive: true });
  });

  it('stops at the next chunk when aborted and leaves nothing behind', async () => {
    const source = path.join(work, 'aborted');
    writeTinyCheckpoint(source, { seed: 7 });
    const out = path.join(work, 'aborted-onnx');
    const abort = new AbortController();
    let reports = 0;
    await expect(convertCheckpoint(source, {
      out,
      signal: abort.signal,
      onProgress: () => {
        if (++reports === 3) abort.abort(new Error('interrupted by the user'));
      },
    })).rejects.toThrow('interrupted by the user');
    expect(reports).toBeLessThan(6);
    expect(siblings(out)).toEqual([]);
  });

  it('leaves nothing behind when the conversion fails midway', async () => {
    const source = path.join(work, 'interrupted');
    writeTinyCheckpoint(source, { seed: 7 });
    const out = path.join(work, 'interrupted-onnx');
    let calls = 0;
    await expect(convertCheckpoint(source, {
      out,
      onProgress: () => {
        if (++calls === 5) throw new Error('interrupted');
      },
    })).rejects.toThrow('interrupted');
    expect(siblings(out)).toEqual([]);
  });
});

describe('config.json parsing', () => {
  const falcon7b = {
    architectures: ['FalconForCausalLM'], model_type: 'falcon', hidden_size: 4544, num_attention_heads: 71, num_hidden_layers: 32,
    num_kv_heads: 71, multi_query: true, new_decoder_architecture: false, parallel_attn: true, alibi: false, bias: false,
    vocab_size: 65024, layer_norm_epsilon: 1e-5, bos_token_id: 11, eos_token_id: 11, torch_dtype: 'bfloat16',
  };

  it('reads Falcon-7B with one kv head whatever num_kv_heads says (multi-query trap)', () => {
    expect(parseFalconConfig(falcon7b).shape).toEqual({
      hiddenSize: 4544, numHeads: 71, numKvHeads: 1, headDim: 64, numLayers: 32, ffnHiddenSize: 18176, vocabSize: 65024,
      layerNormEpsilon: 1e-5, ropeTheta: 10000, contextLength: 2048,
    });
  });

  it('reads the old RW naming and the transformers 5 fields', () => {
    const rw = parseFalconConfig({ model_type: 'RefinedWebModel', n_embed: 4544, n_head: 71, n_layer: 32, vocab_size: 65024, multi_query: true, parallel_attn: true, torch_dtype: 'bfloat16' });
    expect(rw.shape).toMatchObject({ hiddenSize: 4544, numHeads: 71, numLayers: 32, numKvHeads: 1 });
    expect(rw.declaredDType).toBe('bfloat16');
    const v5 = parseFalconConfig({ ...falcon7b, torch_dtype: undefined, dtype: 'float16', rope_parameters: { rope_type: 'default', rope_theta: 500000 } });
    expect(v5.shape.ropeTheta).toBe(500000);
    expect(v5.declaredDType).toBe('float16');
    expect(parseFalconConfig({ ...falcon7b, rope_theta: 20000 }).shape.ropeTheta).toBe(20000);
  });

  it.each([
    [{ new_decoder_architecture: true }, /new_decoder_architecture .* not supported/],
    [{ alibi: true }, /alibi .* not supported/],
    [{ model_type: 'llama' }, /model_type "llama" is not a Falcon model/],
    [{ hidden_size: undefined }, /missing hidden_size \/ n_embed/],
    [{ num_attention_heads: 'many' }, /num_attention_heads must be a positive integer/],
    [{ hidden_size: 4545 }, /not divisible by num_attention_heads/],
  ])('refuses %j with a clear message', (patch, message) => {
    expect(() => parseFalconConfig({ ...falcon7b, ...patch }, '/models/x/config.json')).toThrow(message);
    expect(() => parseFalconConfig({ ...falcon7b, ...patch }, '/models/x/config.json')).toThrow(/\/models\/x\/config.json/);
  });
});

describe('bad checkpoints: a clear error naming the file and tensor, and no output directory', () => {
  type Breaker = (dir: string) => void;
  const rewriteHeader = (file: string, edit: (header: Record<string, { dtype: string; shape: number[] }>) => void) => {
    const bytes = fs.readFileSync(file);
    const length = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.subarray(8, 8 + length).toString('utf8'));
    edit(header);
    const json = Buffer.from(JSON.stringify(header).padEnd(length, ' '));
    if (json.length !== length) throw new Error('header grew');
    json.copy(bytes, 8);
    fs.writeFileSync(file, bytes);
  };
  const cases: [string, Breaker, RegExp][] = [
    ['missing config.json', (dir) => fs.rmSync(path.join(dir, 'config.json')), /config.json: missing/],
    ['malformed config.json', (dir) => fs.writeFileSync(path.join(dir, 'config.json'), '{"hidden_size": 64,'), /config.json: not valid JSON/],
    ['unsupported architecture', (dir) => {
      const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
      fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...config, new_decoder_architecture: true }));
    }, /config.json: new_decoder_architecture/],
    ['no safetensors', (dir) => fs.rmSync(path.join(dir, 'model.safetensors')), /no model.safetensors or model.safetensors.index.json/],
    ['missing tensor', (dir) => {
      const tensors = randomFalconTensors(TINY_SHAPE, 1).filter((t) => t.name !== hfTensor.dense(1));
      writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
    }, /tensor transformer\.h\.1\.self_attention\.dense\.weight is missing/],
    ['wrong shape', (dir) => {
      const tensors = randomFalconTensors(TINY_SHAPE, 1).map((t) => (t.name === hfTensor.up(0) ? { ...t, shape: [t.shape[1], t.shape[0]] } : t));
      writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
    }, /model\.safetensors: tensor transformer\.h\.0\.mlp\.dense_h_to_4h\.weight has shape \[64,256\], expected \[256,64\]/],
    ['unknown dtype', (dir) => rewriteHeader(path.join(dir, 'model.safetensors'), (h) => (h[hfTensor.qkv(0)].dtype = 'I8')),
      /model\.safetensors: tensor transformer\.h\.0\.self_attention\.query_key_value\.weight has unsupported dtype I8/],
    ['truncated safetensors', (dir) => {
      const file = path.join(dir, 'model.safetensors');
      fs.truncateSync(file, fs.statSync(file).size - 100);
    }, /model\.safetensors: tensor .* ends at byte \d+ but the file has \d+ bytes \(truncated\)/],
    ['missing tokenizer', (dir) => fs.rmSync(path.join(dir, 'tokenizer.json')), /tokenizer.json: missing/],
  ];

  it.each(cases)('%s', async (label, breakIt, message) => {
    const source = path.join(work, `bad-${label.replaceAll(' ', '-')}`);
    writeTinyCheckpoint(source, { seed: 1 });
    breakIt(source);
    const out = path.join(work, `bad-${label.replaceAll(' ', '-')}-onnx`);
    const attempt = convertCheckpoint(source, { out });
    await expect(attempt).rejects.toBeInstanceOf(ModelInputError);
    await expect(convertCheckpoint(source, { out })).rejects.toThrow(message);
    expect(siblings(out)).toEqual([]);
    expect(fs.existsSync(path.join(out, MANIFEST_FILE))).toBe(false);
  });
});
