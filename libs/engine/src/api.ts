// The engine's contract with its owners (the worker app and the CLI). Implemented in this lib; kept small and
// serialisable because requests and events cross a worker_thread boundary.

import type { ExecutionProviderName } from '@app/model';

/** What an owner may ask for: an execution provider, or 'auto' (cuda where it loads, else webgpu, else cpu). */
export const EXECUTION_PROVIDER_CHOICES = ['auto', 'cpu', 'webgpu', 'cuda'] as const;
export type ExecutionProviderChoice = (typeof EXECUTION_PROVIDER_CHOICES)[number];

/** An engine feature's setting (cudaFpaIntbGemm, prefillWarmUp): 'auto' lets the engine decide as the option says. */
export const SWITCH_CHOICES = ['auto', 'on', 'off'] as const;
export type SwitchChoice = (typeof SWITCH_CHOICES)[number];
/** 'auto' turns the fpA_intB GEMM on above this many slots: up to 16 rows the default kernel is a GEMV anyway. */
export const CUDA_FPA_INTB_AUTO_MIN_SLOTS = 17;

export interface GenerationParams {
  maxNewTokens: number; // default 256
  doSample: boolean; // default false (greedy)
  temperature: number; // default 1.0, > 0
  topK: number; // 0 = off
  topP: number; // 1.0 = off
  repetitionPenalty: number; // 1.0 = off
  seed?: number; // sampling seed; the same seed gives the same text whatever else is in the batch
  stop: string[]; // up to 4 stop strings, not included in the text
  numReturnSequences: number; // default 1
  returnFullText: boolean; // default false: text = generated part only
  ignoreEos: boolean; // default false
  truncate: boolean; // default false: an over-long prompt is refused; true keeps its last tokens
  /**
   * Report log-probabilities (sampling/logprobs.ts): each generated token's, with this many most likely
   * alternatives (0-20). Absent: none. Rows that ask are decoded with the full logits output.
   */
  logprobs?: number;
  /**
   * With logprobs: also report each prompt token's log-probability given the tokens before it (OpenAI's echo with
   * logprobs, "scoring"), with the same number of alternatives. The model's graph gives the logits of a row's last
   * position only, so such a sequence prefills its first prompt token and feeds the rest one per decode step, each
   * step's next token forced to the prompt's next token: one model step per prompt token. maxNewTokens may then be 0.
   */
  promptLogprobs?: boolean;
}

export interface GenerationRequest {
  id: string;
  prompt: string;
  /** Token ids to use instead of encoding `prompt` (benchmarks with prompts of exact token length). */
  promptIds?: number[];
  params?: Partial<GenerationParams>;
  /**
   * Someone reads this request's tokens as they come (an online request): while it decodes, decode-loop runs last
   * at most decodeChunkMinSteps, so its tokens arrive in small groups. Batch work leaves it unset.
   */
  interactive?: boolean;
}

export type FinishReason = 'eos' | 'stop' | 'length' | 'cancelled';

/** One generated token's log-probability under the model, and the most likely alternatives at that step. */
export interface TokenLogprob {
  token: number;
  /** The token decoded alone (a piece of a multi-byte character decodes to U+FFFD). */
  text: string;
  logprob: number;
  top: { token: number; text: string; logprob: number }[];
}

/** A prompt token's log-probability given the prompt before it: null (with no alternatives) for the first token. */
export interface PromptTokenLogprob {
  token: number;
  text: string;
  logprob: number | null;
  top: { token: number; text: string; logprob: number }[] | null;
}

export interface GeneratedSequence {
  text: string;
  tokens: number[];
  finishReason: FinishReason;
  /** With params.logprobs: one entry per token of `tokens`. */
  logprobs?: TokenLogprob[];
  /** With params.promptLogprobs: one entry per prompt token (the prompt as run, after any truncation). */
  promptLogprobs?: PromptTokenLogprob[];
}

export interface GenerationResult {
  id: string;
  promptTokens: number;
  sequences: GeneratedSequence[];
  /** ms from submit to first generated token, and to the end */
  timeToFirstTokenMs: number;
  totalMs: number;
}

export interface TokenEvent {
  id: string;
  sequence: number; // index among numReturnSequences
  token: number;
  text: string; // the text this token adds (may be '' while a UTF-8 character is incomplete)
}

export interface EngineOptions {
  modelDir: string;
  /** 'auto': cuda where its provider and libraries load, else webgpu where an adapter exists, else cpu. */
  executionProvider: ExecutionProviderChoice;
  deviceId?: number;
  /** Sequences decoded together. */
  slots: number;
  /** Upper bound of prompt tokens prefilled in one run (bounds memory and keeps long prompts from stalling others). */
  prefillChunkTokens?: number;
  /**
   * The fixed cost of one prefill run, in prompt tokens. Every row of a run is padded to its longest prompt, so a
   * group of newcomers of mixed lengths is prefilled in length-sorted runs wherever the padding saved is worth more
   * than this per extra run (the fewest padded tokens plus run costs; docs/engine.md). Default: 256 where the KV
   * cache is in host memory (cpu, cuda), one run per group elsewhere. A cost of prefillChunkTokens or more keeps
   * one run.
   */
  prefillRunCostTokens?: number;
  /**
   * Joins by prefill (placements host and device-merge) while other rows decode: newcomers wait until this many can
   * be prefilled in one run, or until the oldest has waited `joinMaxWaitSteps` decode steps. One prefill run costs
   * about as much for 8 prompts as for 1, so grouping keeps the decoding rows from paying it for every newcomer.
   * Default: slots / 8 (at least 1).
   */
  joinGroup?: number;
  /** Most decode steps a newcomer waits for its join group (default 4). */
  joinMaxWaitSteps?: number;
  intraOpThreads?: number;
  /**
   * Most tokens (prompt + generated) one sequence may hold; default and upper bound: the model's context. Also the
   * per-row length of the device KV cache, so a smaller value saves GPU memory and per-step copies.
   */
  maxSequenceLength?: number;
  /** When the requested execution provider cannot load, use cpu instead (with a warning) rather than failing. */
  fallbackToCpu?: boolean;
  /**
   * 'continuous' (default): waiting requests join as soon as a slot frees. 'static': admit only when the batch is
   * empty (the classic static batch; kept for benchmarks).
   */
  admission?: 'continuous' | 'static';
  /** Always fetch the full logits output (for benchmarks; normally fetched only on steps where a row needs it). */
  forceFullLogits?: boolean;
  /**
   * Where the KV cache lives between steps (docs/engine.md). 'auto' (default): 'device-merge' on webgpu, 'host'
   * otherwise. 'host': host memory, joins by prefill. 'device': GPU buffers (webgpu), joins fed through decode.
   * 'device-merge': GPU buffers, joins by prefill merged into the cache by a small graph.
   */
  kvPlacement?: 'auto' | 'host' | 'device' | 'device-merge';
  /**
   * Decode steps per session run (docs/engine.md, "Decode loop"): > 1 runs the model's decode-loop graph, whose KV
   * cache stays on the device for that many steps and whose tokens are chosen in the graph (host KV placement).
   * This is the longest run, taken when nothing needs a run boundary sooner (see decodeChunkMinSteps).
   * Default: 128 on cuda when the model has the graph, else 1 (one step per run). Rows that sample from more than
   * the graph's top candidates (top_k 0 or above it) make the batch decode one step at a time while they run.
   */
  decodeChunkSteps?: number;
  /**
   * The run length when a boundary is needed sooner than decodeChunkSteps. A freed row needs one (a newcomer can take
   * it): a run ends when the first row reaches its max_new_tokens if only budgets can end the rows (ignoreEos, no
   * stop strings), else after this many steps, and never sooner. While an interactive request decodes, runs last at
   * most this many steps. Every boundary moves the KV cache through the host once. Default: 32 when
   * decodeChunkSteps takes its default, else decodeChunkSteps.
   */
  decodeChunkMinSteps?: number;
  /**
   * cuda only: onnxruntime's fpA_intB GEMM for the int4 matmuls (session key ep.cuda.fpa_intb_gemm) instead of
   * dequantizing each weight to fp16 on every call once a step has more than 16 rows. Measured on an H100: 1.31x the
   * tokens/s at batch 64 for 2.9 GB more GPU memory (docs/benchmarks.md). 'auto' (default): on when slots > 16, so a
   * small worker keeps the recipe's memory.
   */
  cudaFpaIntbGemm?: SwitchChoice;
  /**
   * Runs each large prefill shape once at load, before serving: all slots, one run per power-of-two bucket of tokens
   * above 2048 up to prefillChunkTokens. The first run of such a shape pays one-time costs, which would otherwise
   * stall every decoding row mid-serving: on cuda with the fpA_intB GEMM, onnxruntime profiles the kernel's tactics
   * for token counts above 2048 lazily, one power-of-two bucket at a time, and its memory arena grows. 'auto'
   * (default): on when the fpA_intB GEMM is. A shape that fails here (out of memory) fails the start, naming it.
   */
  prefillWarmUp?: SwitchChoice;
  /**
   * Decode loop only: its matmuls run as plain fp16 GEMMs (cuBLAS on cuda) over the int4 weights dequantized once,
   * when the session loads (onnxruntime folds the dequantization on the CPU: ~6 ns a parameter on one core, ~45 s
   * for the 7B), instead of onnxruntime's int4 kernels. The weights then take 2 bytes a parameter of GPU memory (~14
   * GB for the 7B instead of ~4.5). For workers that decode many rows at once, where a step's int4 matmuls cost more
   * than reading fp16 weights; a batch-1 step reads 4x the bytes. Needs decode-loop-dequantized.onnx (int4 models
   * converted by this falconq). Default false.
   */
  dequantizeWeights?: boolean;
  /** WebGPU storage buffer cache mode (onnxruntime's default is 'bucket'; it decides most of the GPU memory held). */
  webgpuBufferCacheMode?: 'disabled' | 'lazyRelease' | 'simple' | 'bucket';
  /** Run the engine in the caller's thread (tests, bench): the same scheduler without a worker_thread. */
  inProcess?: boolean;
  /** Receives warnings (EP/model target mismatch, fallbacks). Default: none are lost, they go to EngineInfo.warnings. */
  onWarning?: (message: string) => void;
}

/** What the engine learned while starting: sent back once the session is ready. */
export interface EngineInfo {
  executionProvider: ExecutionProviderName;
  requestedExecutionProvider: ExecutionProviderChoice;
  /** Why this execution provider (for 'auto': what was tried before it and why it was not taken). */
  executionProviderReason: string;
  kvPlacement: 'host' | 'device' | 'device-merge';
  /**
   * cuda's int4 matmuls run onnxruntime's fpA_intB GEMM (EngineOptions.cudaFpaIntbGemm); false on other EPs and with
   * dequantized weights (no int4 matmul is left).
   */
  cudaFpaIntbGemm: boolean;
  /** The decode loop's matmuls run on weights dequantized at load (EngineOptions.dequantizeWeights). */
  dequantizedWeights: boolean;
  /** Prefill runs made at load (EngineOptions.prefillWarmUp), and their time (part of loadMs). */
  warmUp: { runs: number; ms: number };
  /** Decode steps per run (1: one step per run). */
  decodeChunkSteps: number;
  /** Run length when a row may free or an interactive request decodes (EngineOptions.decodeChunkMinSteps). */
  decodeChunkMinSteps: number;
  contextLength: number;
  vocabSize: number;
  eosId: number;
  slots: number;
  prefillChunkTokens: number;
  /** EngineOptions.prefillRunCostTokens; absent: one prefill run per join group. */
  prefillRunCostTokens?: number;
  joinGroup: number;
  joinMaxWaitSteps: number;
  warnings: string[];
  loadMs: number;
  /** worker_threads.threadId of the thread running inference (0 = the owner's main thread, in-process mode). */
  threadId: number;
}

/** The prefill warm-up at load, in words for the start lines (empty when none ran). */
export function warmUpText(info: Pick<EngineInfo, 'warmUp'>): string {
  if (info.warmUp.runs === 0) return '';
  return `prefill warm-up ${info.warmUp.runs} run${info.warmUp.runs === 1 ? '' : 's'} in ${(info.warmUp.ms / 1000).toFixed(1)} s`;
}

/** How the engine's decode runs go, in words (start lines of the worker, the bench header). */
export function decodeRunText(info: Pick<EngineInfo, 'decodeChunkSteps' | 'decodeChunkMinSteps'>): string {
  if (info.decodeChunkSteps <= 1) return '1 decode step per run';
  if (info.decodeChunkMinSteps >= info.decodeChunkSteps) return `${info.decodeChunkSteps} decode steps per run`;
  return `up to ${info.decodeChunkSteps} decode steps per run (${info.decodeChunkMinSteps} when a row may free or an interactive request decodes)`;
}

export interface EngineStats {
  activeSequences: number;
  waitingRequests: number;
  slots: number;
  steps: number;
  generatedTokens: number;
  promptTokens: number;
  decodeMsTotal: number;
  prefillMsTotal: number;
  /** Decode steps that fetched the full logits output (the others fetched only the top-k outputs). */
  fullLogitsSteps: number;
  /** Decode steps (tokens per live row; a decode-loop run counts its steps). */
  decodeSteps: number;
  /** Model runs that decoded (one per step, or one per decode-loop run of several steps). */
  decodeRuns: number;
  /** Rows fed over all decode steps (decodeRows / decodeSteps: how full the batch runs, at most `slots`). */
  decodeRows: number;
  prefillRuns: number;
  finishedSequences: number;
  cancelledRequests: number;
}
