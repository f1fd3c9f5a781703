import { Body, Controller, Get, Headers, HttpCode, Inject, Param, Post, Query } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiHeader, ApiTags } from '@nestjs/swagger';
import type { ItemResult } from '@app/contracts';
import type { ResultsStore } from '@app/store';
import { CurrentPrincipal, type Principal } from '../auth/principal';
import { API_CONFIG, type ApiConfig } from '../config/api-config';
import { ApiError } from '../http/api-error';
import { RESULTS_STORE } from '../infra/infra.module';
import { SERVED_MODEL, type ServedModel } from '../model/served-model';
import { BatchLifecycleService } from './batch-lifecycle.service';
import { itemsFromNative } from './batch-input';
import { BatchSubmissionService } from './batch-submission.service';
import { toOpenAiBatch } from './batch-view';

export interface NativeResultView {
  index: number;
  custom_id: string;
  status: 'pending' | ItemResult['status'];
  text?: string;
  sequences?: { text: string; finish_reason: string; tokens: number }[];
  usage?: { prompt_tokens: number; completion_tokens: number };
  error?: { code: string; message: string };
  attempts?: number;
  finished_at?: number;
}

export function toNativeResult(index: number, customId: string, result: ItemResult | null): NativeResultView {
  if (!result) return { index, custom_id: customId, status: 'pending' };
  const view: NativeResultView = { index, custom_id: result.customId, status: result.status, attempts: result.attempts, finished_at: result.finishedAt };
  if (result.output) {
    view.text = result.output.sequences[0]?.text ?? '';
    view.sequences = result.output.sequences.map((s) => ({ text: s.text, finish_reason: s.finishReason, tokens: s.tokens }));
    view.usage = { prompt_tokens: result.output.promptTokens, completion_tokens: result.output.completionTokens };
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
    @Inject(RESULTS_STORE) private readonly store: ResultsStore,
    @Inject(SERVED_MODEL) private readonly model: ServedModel,
    private readonly submissions: BatchSubmissionService,
    private readonly lifecycle: BatchLifecycleService,
  ) {}

  @Post()
  @HttpCode(200)
  @ApiHeader({ name: 'Idempotency-Key', required: false })
  @ApiBody({ schema: { type: 'object', properties: {
    prompts: { type: 'array', items: { type: 'string' } },
    template: { type: 'string', example: "Question: {question}\nAnswer: Let's think step by step." },
    rows: { type: 'array', items: { type: 'object' } },
    max_new_tokens: { type: 'integer' }, do_sample: { type: 'boolean' }, temperature: { type: 'number' }, top_k: { type: 'integer' },
    top_p: { type: 'number' }, repetition_penalty: { type: 'number' }, num_return_sequences: { type: 'integer' }, seed: { type: 'integer' },
    stop: { type: 'array', items: { type: 'string' } }, return_full_text: { type: 'boolean' }, metadata: { type: 'object' } } } })
  async create(@CurrentPrincipal() principal: Principal, @Body() body: unknown, @Headers('idempotency-key') idempotencyKey?: string) {
    const { items, request } = itemsFromNative(body, this.model, { maxLines: this.config.limits.maxLines });
    const batch = await this.submissions.submit(
      principal,
      { kind: 'native', endpoint: '/v1/completions', items, completionWindow: request.completion_window ?? '24h', metadata: request.metadata ?? null, inputFileId: null },
      idempotencyKey ? { key: idempotencyKey, body: request } : null,
    );
    return toOpenAiBatch(batch);
  }

  @Get(':id')
  async get(@CurrentPrincipal() principal: Principal, @Param('id') id: string) {
    return toOpenAiBatch(await this.lifecycle.visibleBatch(principal, id));
  }

  @Get(':id/results')
  async results(@CurrentPrincipal() principal: Principal, @Param('id') id: string, @Query('offset') offsetText?: string, @Query('limit') limitText?: string) {
    const offset = offsetText === undefined ? 0 : Number(offsetText);
    const limit = limitText === undefined ? 100 : Number(limitText);
    if (!Number.isInteger(offset) || offset < 0) throw ApiError.badRequest('offset: must be an integer >= 0', { param: 'offset' });
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE) throw ApiError.badRequest(`limit: must be an integer between 1 and ${MAX_PAGE}`, { param: 'limit' });
    const batch = await this.lifecycle.visibleBatch(principal, id);
    const results = await this.store.listResults(id, offset, limit);
    const inputs = await this.store.getItemInputs(id, results.map((_, i) => offset + i));
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
    const index = await this.store.indexOfCustomId(id, customId);
    if (index === null) throw ApiError.notFound(`item in batch ${id}`, customId);
    return toNativeResult(index, customId, await this.store.getResult(id, index));
  }

  @Post(':id/cancel')
  @HttpCode(200)
  async cancel(@CurrentPrincipal() principal: Principal, @Param('id') id: string) {
    return toOpenAiBatch(await this.lifecycle.cancel(principal, id));
  }

  @Post(':id/retry-failed')
  @HttpCode(200)
  async retryFailed(@CurrentPrincipal() principal: Principal, @Param('id') id: string) {
    return toOpenAiBatch(await this.lifecycle.retryFailed(principal, id));
  }
}
