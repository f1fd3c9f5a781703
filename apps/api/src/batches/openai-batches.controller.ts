import { Body, Controller, Get, HttpCode, Inject, Param, Post, Query } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiHeader, ApiOkResponse, ApiTags } from '@nestjs/swagger';
import { BATCH_LIST_SCHEMA, BATCH_SCHEMA, EXAMPLES, IDEMPOTENCY_HEADER, IdempotencyKey } from '../http/openapi';
import type { RedisStore } from '@app/store';
import { CurrentPrincipal, canSee, type Principal } from '../auth/principal';
import { API_CONFIG, type ApiConfig } from '../config/api-config';
import { ApiError } from '../http/api-error';
import { LONE_SURROGATE_REASON, createBatchSchema, describeZodIssue, loneSurrogateAt } from '@app/requests';
import { STORE } from '../infra/infra.module';
import { SERVED_MODEL, type ServedModel } from '../model/served-model';
import { BatchLifecycleService } from './batch-lifecycle.service';
import { RequestChecker } from '../checks/request-checker';
import { parseEndpoint } from './batch-input';
import { MAX_LISTED_ERRORS, dryRunAnswer } from './batch-estimate';
import { batchSearchOf } from './batch-search';
import { BatchSubmissionService, COMPLETION_WINDOWS } from './batch-submission.service';
import { toOpenAiBatch } from './batch-view';

/** OpenAI Batch API: POST /v1/batches from an uploaded JSONL file, retrieve, list, cancel. */
@ApiTags('batches (OpenAI compatible)')
@ApiBearerAuth()
@Controller('v1/batches')
export class OpenAiBatchesController {
  constructor(
    @Inject(API_CONFIG) private readonly config: ApiConfig,
    @Inject(STORE) private readonly store: RedisStore,
    @Inject(SERVED_MODEL) private readonly model: ServedModel,
    private readonly submissions: BatchSubmissionService,
    private readonly lifecycle: BatchLifecycleService,
    private readonly checker: RequestChecker,
  ) {}

  @Post()
  @HttpCode(200)
  @ApiHeader(IDEMPOTENCY_HEADER)
  @ApiOkResponse({ description: 'the batch (with dry_run: the check and estimate)', schema: BATCH_SCHEMA })
  @ApiBody({ schema: { type: 'object', required: ['input_file_id', 'endpoint', 'completion_window'], properties: {
    input_file_id: { type: 'string' }, endpoint: { type: 'string', enum: ['/v1/completions', '/v1/chat/completions'] },
    completion_window: { type: 'string', enum: ['24h'] }, metadata: { type: 'object', additionalProperties: { type: 'string' } },
    output_expires_after: { type: 'object', properties: { anchor: { type: 'string', enum: ['created_at'] }, seconds: { type: 'integer', minimum: 3600, maximum: 2592000 } } },
    dry_run: { type: 'boolean', description: 'falconq: check every line and estimate the work; nothing is stored or enqueued' } } },
    examples: { file: EXAMPLES.openAiBatch } })
  async create(@CurrentPrincipal() principal: Principal, @Body() body: unknown, @IdempotencyKey() idempotencyKey?: string) {
    const illFormed = loneSurrogateAt(body);
    if (illFormed !== null) throw ApiError.badRequest(`${illFormed}: ${LONE_SURROGATE_REASON}`, { param: illFormed });
    const parsed = createBatchSchema.safeParse(body);
    if (!parsed.success) {
      const issue = describeZodIssue(parsed.error);
      throw ApiError.badRequest(`${issue.field}: ${issue.message}`, { param: issue.field });
    }
    const request = parsed.data;
    const endpoint = parseEndpoint(request.endpoint);
    if (!(request.completion_window in COMPLETION_WINDOWS)) {
      throw ApiError.badRequest(`completion_window: "${request.completion_window}" is not supported; use "24h"`, { param: 'completion_window' });
    }
    if (request.metadata && Object.keys(request.metadata).length > 16) {
      throw ApiError.badRequest('metadata: at most 16 keys', { param: 'metadata' });
    }
    const file = await this.store.files.get(request.input_file_id);
    if (!file || !canSee(principal, file.owner)) throw ApiError.notFound('file', request.input_file_id);
    if (file.purpose !== 'batch') throw ApiError.badRequest(`input_file_id: file ${file.id} has purpose "${file.purpose}", not "batch"`, { param: 'input_file_id' });
    // The file's bytes, gathered from its chunks into one buffer that moves to a check thread without a copy (the
    // thread decodes and checks it); the batch's items are built from it there.
    const content = await this.store.files.bytes(file.id);
    if (!content) throw ApiError.notFound('file', request.input_file_id);
    const checked = await this.checker.check({ kind: 'jsonl', content, endpoint });
    if (request.dry_run) {
      return dryRunAnswer({
        endpoint, totalLines: checked.items.length + checked.problems.length, validLines: checked.items.length, problems: checked.problems,
        promptTokens: checked.promptTokens, maxCompletionTokens: checked.maxCompletionTokens, workers: await this.store.workers.list(this.config.workerStaleMs),
      });
    }
    const batch = await this.submissions.submit(
      principal,
      {
        kind: 'openai', endpoint, items: checked.items, completionWindow: request.completion_window, metadata: request.metadata ?? null, inputFileId: file.id,
        invalidLines: checked.problems.slice(0, MAX_LISTED_ERRORS),
        ...(request.output_expires_after ? { retentionSeconds: request.output_expires_after.seconds } : {}),
      },
      idempotencyKey ? { key: idempotencyKey, body: request } : null,
    );
    return toOpenAiBatch(batch);
  }

  /**
   * OpenAI batches only (native ones are listed by GET /batches), newest first. falconq extensions to search them:
   * `status=completed,failed` and `metadata[key]=value` (every pair must match).
   */
  @Get()
  @ApiOkResponse({ schema: BATCH_LIST_SCHEMA })
  async list(@CurrentPrincipal() principal: Principal, @Query() query: Record<string, unknown>) {
    const filters = batchSearchOf(query);
    if (filters.after) await this.lifecycle.visibleBatch(principal, filters.after);
    const page = await this.store.batches.list({ owner: principal.admin ? undefined : principal.tenant, kind: 'openai', ...filters });
    const data = page.data.map(toOpenAiBatch);
    return { object: 'list', data, first_id: data[0]?.id ?? null, last_id: data[data.length - 1]?.id ?? null, has_more: page.hasMore };
  }

  @Get(':id')
  @ApiOkResponse({ schema: BATCH_SCHEMA })
  async get(@CurrentPrincipal() principal: Principal, @Param('id') id: string) {
    return toOpenAiBatch(await this.lifecycle.visibleBatch(principal, id));
  }

  @Post(':id/cancel')
  @HttpCode(200)
  @ApiOkResponse({ schema: BATCH_SCHEMA })
  async cancel(@CurrentPrincipal() principal: Principal, @Param('id') id: string) {
    return toOpenAiBatch(await this.lifecycle.cancel(principal, id));
  }
}
