import { createParamDecorator, type ExecutionContext } from '@nestjs/common';
import type { SchemaObject } from '@nestjs/swagger/dist/interfaces/open-api-spec.interface';
import type { Request } from 'express';

// What /docs shows beyond the routes: the response objects of the main routes, request examples that succeed when
// sent against the tiny model, and the optional Idempotency-Key header (read by a decorator Swagger does not list, so
// the header appears once, as documented by @ApiHeader).

/** The Idempotency-Key header of a create request, if sent. */
export const IdempotencyKey = createParamDecorator((_: unknown, context: ExecutionContext): string | undefined => {
  const value = context.switchToHttp().getRequest<Request>().headers['idempotency-key'];
  return typeof value === 'string' ? value : undefined;
});

export const IDEMPOTENCY_HEADER = {
  name: 'Idempotency-Key', required: false,
  description: 'Optional. A retried request with the same key and body returns the same batch instead of creating another; the same key with another body is refused (409).',
};

const counts: SchemaObject = {
  type: 'object', properties: { total: { type: 'integer' }, completed: { type: 'integer' }, failed: { type: 'integer' } },
};
const nullableSeconds: SchemaObject = { type: 'integer', nullable: true, description: 'Unix time, seconds' };

/** OpenAI's Batch object (native batches are shown the same way). */
export const BATCH_SCHEMA: SchemaObject = {
  type: 'object',
  properties: {
    id: { type: 'string', example: 'batch_0123456789abcdef' },
    object: { type: 'string', enum: ['batch'] },
    endpoint: { type: 'string', example: '/v1/completions' },
    model: { type: 'string' },
    errors: { type: 'object', nullable: true, properties: { object: { type: 'string' }, data: { type: 'array', items: { type: 'object', properties: {
      code: { type: 'string' }, message: { type: 'string' }, param: { type: 'string', nullable: true }, line: { type: 'integer', nullable: true } } } } } },
    input_file_id: { type: 'string', nullable: true },
    completion_window: { type: 'string', example: '24h' },
    status: { type: 'string', example: 'in_progress' },
    output_file_id: { type: 'string', nullable: true },
    error_file_id: { type: 'string', nullable: true },
    created_at: { type: 'integer' },
    in_progress_at: nullableSeconds, expires_at: { type: 'integer' }, finalizing_at: nullableSeconds, completed_at: nullableSeconds,
    failed_at: nullableSeconds, expired_at: nullableSeconds, cancelling_at: nullableSeconds, cancelled_at: nullableSeconds,
    request_counts: counts,
    usage: { type: 'object', properties: { input_tokens: { type: 'integer' }, output_tokens: { type: 'integer' }, total_tokens: { type: 'integer' } } },
    metadata: { type: 'object', nullable: true, additionalProperties: { type: 'string' } },
    tenant: { type: 'string', description: 'Native listing, admin keys only: the tenant that owns the batch.' },
  },
};

export const BATCH_LIST_SCHEMA: SchemaObject = {
  type: 'object',
  properties: {
    object: { type: 'string', enum: ['list'] }, data: { type: 'array', items: BATCH_SCHEMA },
    first_id: { type: 'string', nullable: true }, last_id: { type: 'string', nullable: true }, has_more: { type: 'boolean' },
  },
};

export const NATIVE_RESULTS_SCHEMA: SchemaObject = {
  type: 'object',
  properties: {
    object: { type: 'string', enum: ['list'] }, batch_id: { type: 'string' }, status: { type: 'string' }, request_counts: counts,
    data: { type: 'array', items: { type: 'object', properties: {
      index: { type: 'integer' }, custom_id: { type: 'string' }, status: { type: 'string', example: 'succeeded' }, text: { type: 'string' },
      sequences: { type: 'array', items: { type: 'object', properties: { text: { type: 'string' }, finish_reason: { type: 'string' }, tokens: { type: 'integer' } } } },
      usage: { type: 'object', properties: { prompt_tokens: { type: 'integer' }, completion_tokens: { type: 'integer' }, total_tokens: { type: 'integer' } } },
      error: { type: 'object', properties: { code: { type: 'string' }, message: { type: 'string' } } },
    } } },
    has_more: { type: 'boolean' },
  },
};

export const FILE_SCHEMA: SchemaObject = {
  type: 'object',
  properties: {
    id: { type: 'string', example: 'file-0123456789abcdef' }, object: { type: 'string', enum: ['file'] }, bytes: { type: 'integer' },
    created_at: { type: 'integer' }, filename: { type: 'string' }, purpose: { type: 'string', example: 'batch' },
  },
};

const usage: SchemaObject = { type: 'object', properties: { prompt_tokens: { type: 'integer' }, completion_tokens: { type: 'integer' }, total_tokens: { type: 'integer' } } };

export const COMPLETION_SCHEMA: SchemaObject = {
  type: 'object',
  properties: {
    id: { type: 'string' }, object: { type: 'string', enum: ['text_completion'] }, created: { type: 'integer' }, model: { type: 'string' },
    choices: { type: 'array', items: { type: 'object', properties: { text: { type: 'string' }, index: { type: 'integer' }, finish_reason: { type: 'string', enum: ['stop', 'length'] } } } },
    usage,
  },
};

export const CHAT_COMPLETION_SCHEMA: SchemaObject = {
  type: 'object',
  properties: {
    id: { type: 'string' }, object: { type: 'string', enum: ['chat.completion'] }, created: { type: 'integer' }, model: { type: 'string' },
    choices: { type: 'array', items: { type: 'object', properties: {
      index: { type: 'integer' }, message: { type: 'object', properties: { role: { type: 'string' }, content: { type: 'string' } } },
      finish_reason: { type: 'string', enum: ['stop', 'length'] } } } },
    usage,
  },
};

/** Request examples: each is a valid request (the OpenAPI test sends them). */
export const EXAMPLES = {
  nativePrompts: { summary: 'a list of prompts', value: { prompts: ['Question: What is a falcon?\nAnswer:', 'The capital of France is'], max_new_tokens: 32 } },
  nativeTemplate: {
    summary: 'a template with rows',
    value: { template: "Question: {question}\nAnswer: Let's think step by step.", rows: [{ question: 'What is 7*6?' }, { question: 'Name a prime.' }], max_new_tokens: 32, do_sample: true, top_k: 10, seed: 1 },
  },
  completion: { summary: 'one prompt', value: { model: 'falcon', prompt: 'Question: What is a falcon?\nAnswer:', max_tokens: 32, temperature: 0 } },
  chat: { summary: 'one conversation', value: { model: 'falcon', messages: [{ role: 'user', content: 'What is a falcon?' }], max_tokens: 32 } },
  openAiBatch: {
    summary: 'from an uploaded file (POST /v1/files first: use its id)',
    value: { input_file_id: 'file-0123456789abcdef', endpoint: '/v1/chat/completions', completion_window: '24h', metadata: { project: 'demo' } },
  },
};
