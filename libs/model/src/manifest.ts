// falconq.json: what a converted model directory holds. Written by libs/model, read by libs/engine and the apps.

export type WeightDType = 'int4' | 'fp16' | 'fp32';
export type ActivationDType = 'fp32' | 'fp16';
export type ModelTarget = 'cpu' | 'gpu';
export type ExecutionProviderName = 'cpu' | 'webgpu' | 'cuda';

export interface FalconShape {
  hiddenSize: number;
  numHeads: number;
  /** 1 for Falcon-7B (multi-query). */
  numKvHeads: number;
  headDim: number;
  numLayers: number;
  ffnHiddenSize: number;
  vocabSize: number;
  layerNormEpsilon: number;
  ropeTheta: number;
  /** Maximum total tokens (prompt + generated): 2048 for Falcon. */
  contextLength: number;
}

export interface ModelIoNames {
  inputIds: string; // 'input_ids' int64 [batch, seq]
  attentionMask: string; // 'attention_mask' int64 [batch, total_seq]
  /** printf-style with %d = layer: 'past_key_values.%d.key' */
  pastKey: string;
  pastValue: string;
  presentKey: string; // 'present.%d.key'
  presentValue: string;
  /** fp32 [batch, 1, vocab]: logits of each row's last real token only. */
  logits: string;
  /**
   * fp32 and int64 [batch, topGroups * topK]: the vocabulary is cut into topGroups equal groups and each group's topK
   * largest logits come back, descending within the group, with ids relative to the group's start
   * (id = g * vocab / topGroups + top_ids[b, g * topK + j]). The engine merges the groups.
   */
  topLogits: string;
  topIds: string;
  topK: number;
  /** Absent in models built before grouping: 1. */
  topGroups?: number;
}

export interface DecodeLoopIoNames {
  steps: string;
  doSample: string;
  temperature: string;
  topK: string;
  topP: string;
  repetitionPenalty: string;
  uniforms: string;
  seen: string;
  tokens: string;
  /**
   * Per layer (`%d`), [B, kvHeads, steps, headDim]: the KV positions a run fed one token per row wrote, row b's from
   * its mask length - 1 on. Absent in models converted before these outputs existed (the engine then fetches the
   * whole presents).
   */
  writtenKey?: string;
  writtenValue?: string;
}

export interface ModelManifest {
  format: 'falconq-model';
  formatVersion: 1;
  architecture: 'falcon';
  shape: FalconShape;
  weights: {
    dtype: WeightDType;
    /** Present when dtype is int4: symmetric round-to-nearest in the MatMulNBits layout. */
    quantization?: { method: 'rtn-symmetric'; bits: 4; blockSize: number; accuracyLevel: number };
  };
  activations: ActivationDType;
  /** KV cache element type (= activations). */
  kvDType: ActivationDType;
  target: ModelTarget;
  executionProviders: ExecutionProviderName[];
  io: ModelIoNames;
  tokens: { eos: number; bos: number; pad: number };
  /**
   * decodeLoop: decode-loop.onnx (absent in models converted before it existed); decodeLoopDequantized: the same loop
   * over weights dequantized at load (int4 models only; absent in older ones).
   */
  files: { model: string; decodeLoop?: string; decodeLoopDequantized?: string; weights: string; tokenizer: string; tokenizerConfig: string };
  /** decode-loop.onnx: its extra input/output names and how many top candidates its sampler draws from. */
  decodeLoop?: { candidates: number; io: DecodeLoopIoNames };
  source: { kind: 'local' | 'hub' | 'tiny' | 'random'; id: string; revision?: string };
  sizeBytes: number;
  /** Size and sha256 of every file but the manifest, written at build time (absent in older models). */
  checksums?: Record<string, { bytes: number; sha256: string }>;
  createdAt: string;
  converter: string;
}
