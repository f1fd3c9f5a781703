import { Body, Controller, Get, HttpCode, Inject, Param, Post, Query } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiHeader, ApiOkResponse, ApiTags } from '@nestjs/swagger';
import { BATCH_LIST_SCHEMA, BATCH_SCHEMA, EXAMPLES, IDEMPOTENCY_HEADER, IdempotencyKey, NATIVE_RESULTS_SCHEMA } from '../http/openapi';
import type { ItemResult } from '@app/contracts';
import type { RedisStore } from '@app/store';
import { CurrentPrincipal, type Principal } from '../auth/principal';
import { API_CONFIG, type ApiConfig } from '../config/api-config';
import { ApiError } from '../http/api-error';
import { STORE } from '../infra/infra.module';
import { SERVED_MODEL, type ServedModel } from '../model/served-model';
import { BatchLifecycleService } from './batch-lifecycle.service';
import { RequestChecker } from '../checks/request-checker';
import { BatchSubmissionService } from './batch-submission.service';
import { toOpenAiBatch } from './batch-view';
import { dryRunAnswer } from './batch-estimate';
import { batchSearchOf } from './batch-search';

export interface NativeResultView {
  index: number;
  custom_id: string;
  status: 'pending' | ItemResult['status'];
  text?: string;
  sequences?: { text: string; finish_reason: string; tokens: number }[];
  usage?: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
  error?: { code: string; message: string };
  attempts?: number;
  finished_at?: number;
}

export function toNativeResult(index: number, customId: string, result: ItemResult | null): NativeResultView {
  if (!result) return { index, custom_id: customId, status: 'pending' };
  // Seconds, as every other timestamp of the api.
  const view: NativeResultView = { index, custom_id: result.customId, status: result.status, attempts: result.attempts, finished_at: Math.floor(result.finishedAt / 1000) };
  if (result.output) {
    view.text = result.output.sequences[0]?.text ?? '';
    view.sequences = result.output.sequences.map((s) => ({ text: s.text, finish_reason: s.finishReason, tokens: s.tokens }));
    const { promptTokens, completionTokens } = result.output;
    view.usage = { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
  }
  if (result.error) view.error = result.error;
  return view;
}

const MAX_PAGE = 1000;

/** Native batches: a list of prompts, or a prompt template with rows, with shared generation parameters. */
@ApiTags('batches (native)')
@ApiBearerAuth()
@Controller('batches')
export class NativeBatchesController {
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
  @ApiBody({ schema: { type: 'object', properties: {
    prompts: { type: 'array', items: { type: 'string' } },
    template: { type: 'string', example: "Question: {question}\nAnswer: Let's think step by step." },
    rows: { type: 'array', items: { type: 'object' } },
    max_new_tokens: { type: 'integer' }, do_sample: { type: 'boolean' }, temperature: { type: 'number' }, top_k: { type: 'integer' },
    top_p: { type: 'number' }, repetition_penalty: { type: 'number' }, num_return_sequences: { type: 'integer' }, seed: { type: 'integer' },
    stop: { type: 'array', items: { type: 'string' } }, return_full_text: { type: 'boolean' }, metadata: { type: 'object' },
    dry_run: { type: 'boolean', description: 'check every prompt and estimate the work; nothing is stored or enqueued' } } },
    examples: { prompts: EXAMPLES.nativePrompts, template: EXAMPLES.nativeTemplate } })
  async create(@CurrentPrincipal() principal: Principal, @Body() body: unknown, @IdempotencyKey() idempotencyKey?: string) {
    // The body arrives unparsed (bytes): the check thread parses it, off the event loop.
    const { items, request, problems, promptTokens, maxCompletionTokens } = await this.checker.check({ kind: 'native', body });
    if (request.dry_run === true) {
      return dryRunAnswer({
        endpoint: '/v1/completions', totalLines: items.length + problems.length, validLines: items.length, problems, promptTokens, maxCompletionTokens,
        workers: await this.store.workers.list(this.config.workerStaleMs),
      });
    }
    const batch = await this.submissions.submit(
      principal,
      { kind: 'native', endpoint: '/v1/completions', items, template: request.template, completionWindow: request.completion_window ?? '24h', metadata: request.metadata ?? null, inputFileId: null },
      idempotencyKey ? { key: idempotencyKey, body: request } : null,
    );
    return toOpenAiBatch(batch);
  }

  /** A tenant's batches (OpenAI and native), newest first (an admin: all, with `tenant`); search with `status=` and `metadata[key]=value`. */
  @Get()
  @ApiOkResponse({ schema: BATCH_LIST_SCHEMA })
  async list(@CurrentPrincipal() principal: Principal, @Query() query: Record<string, unknown>) {
    const filters = batchSearchOf(query);
    if (filters.after) await this.lifecycle.visibleBatch(principal, filters.after);
    const page = await this.store.batches.list({ owner: principal.admin ? undefined : principal.tenant, ...filters });
    // An admin sees every tenant's batches, each with its tenant.
    const data = page.data.filter((batch) => batch.kind !== 'online')
      .map((batch) => (principal.admin ? { ...toOpenAiBatch(batch), tenant: batch.owner } : toOpenAiBatch(batch)));
    return { object: 'list', data, first_id: data[0]?.id ?? null, last_id: data[data.length - 1]?.id ?? null, has_more: page.hasMore };
  }

  @Get(':id')
  @ApiOkResponse({ schema: BATCH_SCHEMA })
  async get(@CurrentPrincipal() principal: Principal, @Param('id') id: string) {
    return toOpenAiBatch(await this.lifecycle.visibleBatch(principal, id));
  }

  /** Results by position (offset, limit), or the items whose custom_id starts with `custom_id_prefix`. */
  @Get(':id/results')
  @ApiOkResponse({ schema: NATIVE_RESULTS_SCHEMA })
  async results(@CurrentPrincipal() principal: Principal, @Param('id') id: string, @Query('offset') offsetText?: string, @Query('limit') limitText?: string,
    @Query('custom_id_prefix') customIdPrefix?: string) {
    const offset = offsetText === undefined ? 0 : Number(offsetText);
    const limit = limitText === undefined ? 100 : Number(limitText);
    if (!Number.isInteger(offset) || offset < 0) throw ApiError.badRequest('offset: must be an integer >= 0', { param: 'offset' });
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE) throw ApiError.badRequest(`limit: must be an integer between 1 and ${MAX_PAGE}`, { param: 'limit' });
    const batch = await this.lifecycle.visibleBatch(principal, id);
    if (customIdPrefix !== undefined) {
      if (typeof customIdPrefix !== 'string' || offsetText !== undefined) throw ApiError.badRequest('custom_id_prefix: give it once, without offset', { param: 'custom_id_prefix' });
      const found = await this.store.results.findCustomIdsByPrefix(id, customIdPrefix, limit);
      const data = await Promise.all(found.items.map(async (item) => toNativeResult(item.index, item.customId, await this.store.results.get(id, item.index))));
      return { object: 'list', batch_id: id, status: batch.status, request_counts: batch.requestCounts, custom_id_prefix: customIdPrefix, limit, data, has_more: found.hasMore };
    }
    const results = await this.store.results.list(id, offset, limit);
    const inputs = await this.store.batches.storedItems(id, results.map((_, i) => offset + i));
    const data = results.map((result, i) => toNativeResult(offset + i, inputs[i]?.customId ?? `item-${offset + i}`, result));
    const next = offset + data.length;
    return {
      object: 'list', batch_id: id, status: batch.status, request_counts: batch.requestCounts, offset, limit,
      total: batch.requestCounts.total, data, next_offset: next < batch.requestCounts.total ? next : null,
    };
  }

  @Get(':id/results/:customId')
  async result(@CurrentPrincipal() principal: Principal, @Param('id') id: string, @Param('customId') customId: string) {
    await this.lifecycle.visibleBatch(principal, id);
    const index = await this.store.results.indexOfCustomId(id, customId);
    if (index === null) throw ApiError.notFound(`item in batch ${id}`, customId);
    return toNativeResult(index, customId, await this.store.results.get(id, index));
  }

  @Post(':id/cancel')
  @HttpCode(200)
  @ApiOkResponse({ schema: BATCH_SCHEMA })
  async cancel(@CurrentPrincipal() principal: Principal, @Param('id') id: string) {
    return toOpenAiBatch(await this.lifecycle.cancel(principal, id));
  }

  @Post(':id/retry-failed')
  @HttpCode(200)
  @ApiOkResponse({ schema: BATCH_SCHEMA })
  async retryFailed(@CurrentPrincipal() principal: Principal, @Param('id') id: string) {
    return toOpenAiBatch(await this.lifecycle.retryFailed(principal, id));
  }
}
