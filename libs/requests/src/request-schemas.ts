import { z } from 'zod';

// Request bodies in OpenAI's shapes (plus the TGI-style extensions falconq supports) and the native batch body.
// Types are checked here; ranges are the engine's rules (resolveGenerationParams), applied in generation-params.ts.

/** A string whose UTF-8 encoding is at most `max` bytes (what it costs in Redis, whatever the script). */
export const boundedString = (max: number) =>
  z.string().refine((value) => value.length <= max && Buffer.byteLength(value, 'utf8') <= max, { message: `must be at most ${max} bytes (UTF-8)` });

/** Stop strings are matched against generated text; beyond a few hundred bytes one can never match a short completion. */
export const MAX_STOP_BYTES = 256;
/** OpenAI's metadata limits: 16 pairs, keys up to 64 characters, values up to 512. Here in UTF-8 bytes. */
export const METADATA_LIMITS = { keys: 16, keyBytes: 64, valueBytes: 512 } as const;
export const MAX_CUSTOM_ID_BYTES = 512;

export const metadataSchema = z
  .record(boundedString(METADATA_LIMITS.keyBytes), boundedString(METADATA_LIMITS.valueBytes))
  .refine((metadata) => Object.keys(metadata).length <= METADATA_LIMITS.keys, { message: `must have at most ${METADATA_LIMITS.keys} keys` });

const stopString = boundedString(MAX_STOP_BYTES);
const stop = z.union([stopString, z.array(stopString)]).nullish();

/** Most alternatives per token OpenAI returns (top_logprobs, and completions' logprobs). */
export const MAX_TOP_LOGPROBS = 20;

/**
 * Sampling fields shared by /v1/completions and /v1/chat/completions. The schemas are strict: a key that is not
 * here is refused with a 400 naming it rather than ignored.
 */
const openAiSampling = {
  // Required, as OpenAI requires it: the served id or an alias (checked against them in prompt-builder.ts).
  model: z.string({ error: (issue) => (issue.input === undefined ? 'is required: name the served model (GET /v1/models lists it) or an alias such as "falcon"' : 'must be a string') }),
  max_tokens: z.number().int().nullish(),
  max_completion_tokens: z.number().int().nullish(),
  temperature: z.number().nullish(),
  top_p: z.number().nullish(),
  n: z.number().int().nullish(),
  stop,
  seed: z.number().int().nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.strictObject({ include_usage: z.boolean().optional() }).nullish(),
  user: z.string().nullish(),
  // extensions
  top_k: z.number().int().nullish(),
  repetition_penalty: z.number().nullish(),
  do_sample: z.boolean().nullish(),
  ignore_eos: z.boolean().nullish(),
  truncate: z.boolean().nullish(),
  // accepted only with values falconq can honour (checked in generation-params.ts, each with its reason)
  best_of: z.number().int().nullish(),
  presence_penalty: z.number().nullish(),
  frequency_penalty: z.number().nullish(),
  logit_bias: z.record(z.string(), z.number()).nullish(),
  min_p: z.number().nullish(),
  min_tokens: z.number().int().nullish(),
};

/** One prompt of /v1/completions: text, or token ids (OpenAI and vLLM take both, and lists of either). */
const tokenIds = z.array(z.number().int().min(0, 'token ids are >= 0')).min(1, 'must hold at least one token id');
export const promptSchema = z.union([
  z.string(),
  z.array(z.string()).min(1, 'must hold at least one prompt'),
  tokenIds,
  z.array(tokenIds).min(1, 'must hold at least one prompt'),
], { error: 'must be a string, a list of strings, a list of token ids, or a list of lists of token ids' });

export const completionRequestSchema = z.strictObject({
  ...openAiSampling,
  prompt: promptSchema,
  echo: z.boolean().nullish(),
  suffix: z.string().nullish(),
  logprobs: z.number().int().min(0).max(MAX_TOP_LOGPROBS, `must be at most ${MAX_TOP_LOGPROBS}`).nullish(),
});
export type CompletionRequest = z.infer<typeof completionRequestSchema>;

const textPart = z.strictObject({ type: z.literal('text'), text: z.string() });
export const chatMessageSchema = z.strictObject({
  role: z.enum(['system', 'user', 'assistant', 'developer']),
  content: z.union([z.string(), z.array(textPart)]),
  name: z.string().optional(),
});

export const chatRequestSchema = z.strictObject({
  ...openAiSampling,
  messages: z.array(chatMessageSchema).min(1, 'must hold at least one message'),
  logprobs: z.boolean().nullish(),
  top_logprobs: z.number().int().min(0).max(MAX_TOP_LOGPROBS, `must be at most ${MAX_TOP_LOGPROBS}`).nullish(),
  // Refused unless they ask for nothing (tools [], tool_choice "none", response_format text): see generation-params.ts.
  tools: z.array(z.unknown()).nullish(),
  tool_choice: z.unknown().optional(),
  parallel_tool_calls: z.boolean().nullish(),
  response_format: z.unknown().optional(),
});
export type ChatRequest = z.infer<typeof chatRequestSchema>;

/** Native parameters (Hugging Face TGI names). */
export const nativeParamsShape = {
  max_new_tokens: z.number().int().optional(),
  do_sample: z.boolean().optional(),
  temperature: z.number().optional(),
  top_k: z.number().int().optional(),
  top_p: z.number().optional(),
  repetition_penalty: z.number().optional(),
  num_return_sequences: z.number().int().optional(),
  seed: z.number().int().optional(),
  stop: z.array(stopString).optional(),
  return_full_text: z.boolean().optional(),
  ignore_eos: z.boolean().optional(),
  truncate: z.boolean().optional(),
};

export const nativeBatchSchema = z.strictObject({
  prompts: z.array(z.string()).min(1, 'must hold at least one prompt').optional(),
  template: z.string().min(1).optional(),
  rows: z.array(z.record(z.string(), z.union([z.string(), z.number(), z.boolean()]))).min(1, 'must hold at least one row').optional(),
  metadata: metadataSchema.optional(),
  completion_window: z.literal('24h').optional(),
  dry_run: z.boolean().optional(),
  ...nativeParamsShape,
});
export type NativeBatchRequest = z.infer<typeof nativeBatchSchema>;

/** OpenAI's bounds of output_expires_after.seconds: one hour to 30 days. */
export const OUTPUT_EXPIRY_SECONDS = { min: 3600, max: 30 * 24 * 3600 } as const;

export const createBatchSchema = z.strictObject({
  input_file_id: z.string().min(1),
  endpoint: z.string(),
  completion_window: z.string(),
  metadata: metadataSchema.nullish(),
  output_expires_after: z.strictObject({
    anchor: z.literal('created_at'),
    seconds: z.number().int().min(OUTPUT_EXPIRY_SECONDS.min).max(OUTPUT_EXPIRY_SECONDS.max),
  }).nullish(),
  /** falconq: validate every line and estimate the work; nothing is stored or enqueued. */
  dry_run: z.boolean().optional(),
});

export const batchLineSchema = z.object({
  custom_id: z.string().min(1, 'must be a non-empty string').pipe(boundedString(MAX_CUSTOM_ID_BYTES)),
  method: z.string(),
  url: z.string(),
  body: z.record(z.string(), z.unknown()),
});

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
export const LONE_SURROGATE_REASON = 'holds a lone UTF-16 surrogate (an escape such as \\ud800 without its pair): not valid Unicode, it cannot be stored as UTF-8';

/**
 * The path ("prompts[1]", "body.prompt", "metadata.k") of the first string, or object key, in a parsed JSON value that
 * is not well-formed Unicode; null when there is none. JSON.parse accepts "\ud800", but Redis stores UTF-8, where such a
 * string silently becomes U+FFFD (two different custom_ids could then collide), so requests holding one are refused.
 */
export function loneSurrogateAt(value: unknown): string | null {
  // Iterative, in document order, and the path is built only for a hit: a line may nest thousands of levels deep.
  interface Node { value: unknown; parent: Node | null; key: string | number }
  const pathOf = (node: Node | null, key?: string): string => {
    const parts: (string | number)[] = key === undefined ? [] : [key];
    for (let n = node; n && n.parent; n = n.parent) parts.push(n.key);
    return parts.reverse().reduce<string>((acc, part) => (typeof part === 'number' ? `${acc}[${part}]` : acc ? `${acc}.${part}` : part), '') || '(body)';
  };
  const pending: Node[] = [{ value, parent: null, key: '' }];
  while (pending.length > 0) {
    const node = pending.pop()!;
    const current = node.value;
    if (typeof current === 'string') {
      if (LONE_SURROGATE.test(current)) return pathOf(node);
    } else if (Array.isArray(current)) {
      for (let i = current.length - 1; i >= 0; i--) pending.push({ value: current[i], parent: node, key: i });
    } else if (typeof current === 'object' && current !== null) {
      const entries = Object.entries(current);
      for (const [key] of entries) if (LONE_SURROGATE.test(key)) return pathOf(node, key);
      for (let i = entries.length - 1; i >= 0; i--) pending.push({ value: entries[i][1], parent: node, key: entries[i][0] });
    }
  }
  return null;
}

const pathText = (path: readonly PropertyKey[], prefix = ''): string =>
  path.reduce<string>((acc, part) => (typeof part === 'number' ? `${acc}[${part}]` : acc ? `${acc}.${String(part)}` : String(part)), prefix);

/**
 * "body.messages[0].content: Invalid input" style description of the first zod issue. An unknown key is named
 * itself ("body.foo"), as OpenAI's "Unrecognized request argument supplied: foo" does.
 */
export function describeZodIssue(error: z.ZodError, prefix = ''): { field: string; message: string } {
  const issue = error.issues[0];
  if (issue.code === 'unrecognized_keys') {
    return { field: pathText([...issue.path, issue.keys[0]], prefix), message: 'is not a parameter falconq knows (unrecognized request argument)' };
  }
  return { field: pathText(issue.path, prefix) || '(body)', message: issue.message };
}
