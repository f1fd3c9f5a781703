// Builds the tiny random Falcon once per jest worker process per option set and returns its directory.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createTinyModel, FalconReference, type GraphTuning, type ModelTarget, randomFalconTensors, referenceWeightsFromTensors, TINY_SHAPE } from '@app/model';

export interface TinyModelDirOptions {
  /** int4 (default) with any target; fp32 float weights only with target cpu. */
  weights?: 'int4' | 'fp32';
  target?: ModelTarget;
  seed?: number;
  /** MatMulNBits accuracy_level: 4 (default, like real builds) or 0 (exact compute on the dequantized weights). */
  accuracyLevel?: 0 | 4;
  /** Graph shape choices (defaults: DEFAULT_GRAPH_TUNING). */
  tuning?: Partial<GraphTuning>;
}

const builds = new Map<string, Promise<string>>();
let root: string | undefined;

function tempRoot(): string {
  if (!root) {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'falconq-tiny-'));
    const created = root;
    process.once('exit', () => fs.rmSync(created, { recursive: true, force: true }));
  }
  return root;
}

/** Directory of a converted tiny model (model.onnx, model.onnx.data, falconq.json, tokenizer files). */
export function tinyModelDir(options: TinyModelDirOptions = {}): Promise<string> {
  const weights = options.weights ?? 'int4';
  const target = options.target ?? 'cpu';
  const seed = options.seed ?? 0;
  const accuracyLevel = options.accuracyLevel ?? 4;
  const tuning = options.tuning ?? {};
  const key = `${weights}-${target}-seed${seed}-acc${accuracyLevel}${Object.entries(tuning).map(([field, on]) => `-${field}${on ? 1 : 0}`).join('')}`;
  let build = builds.get(key);
  if (!build) {
    const out = path.join(tempRoot(), key);
    build = createTinyModel({ out, weights, target, seed, accuracyLevel, tuning }).then(() => out);
    builds.set(key, build);
    build.catch(() => builds.delete(key));
  }
  return build;
}

const references = new Map<string, FalconReference>();

/**
 * The float64 reference Falcon with the same weights as `tinyModelDir(options)` (dequantized int4 weights for an
 * int4 model), for comparing logits or greedy tokens.
 */
export function tinyModelReference(options: TinyModelDirOptions = {}): FalconReference {
  const weights = options.weights ?? 'int4';
  const seed = options.seed ?? 0;
  const key = `${weights}-seed${seed}`;
  let reference = references.get(key);
  if (!reference) {
    const tensors = randomFalconTensors(TINY_SHAPE, seed);
    reference = new FalconReference(referenceWeightsFromTensors(TINY_SHAPE, tensors, weights === 'int4' ? { int4BlockSize: 32 } : {}));
    references.set(key, reference);
  }
  return reference;
}
