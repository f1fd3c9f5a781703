import { Controller, Get, HttpStatus, Inject, Param, Res } from '@nestjs/common';
import { ApiError } from '../http/api-error';
import { ApiBearerAuth, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import type { ResultsStore } from '@app/store';
import { Openable } from '../auth/api-key.guard';
import { API_CONFIG, type ApiConfig } from '../config/api-config';
import { RESULTS_STORE } from '../infra/infra.module';
import { SERVED_MODEL, type ServedModel } from '../model/served-model';
import { MetricsService } from './metrics.service';

@ApiTags('operations')
@ApiBearerAuth()
@Controller()
export class OpsController {
  constructor(
    @Inject(API_CONFIG) private readonly config: ApiConfig,
    @Inject(RESULTS_STORE) private readonly store: ResultsStore,
    @Inject(SERVED_MODEL) private readonly model: ServedModel,
    private readonly metrics: MetricsService,
  ) {}

  /** 200 when Redis answers (status "degraded" when no worker was seen recently), 503 when Redis does not. */
  @Get('health')
  @Openable('health')
  async health(@Res() response: Response): Promise<void> {
    try {
      await this.store.ping();
    } catch (error) {
      response.status(HttpStatus.SERVICE_UNAVAILABLE).json({ status: 'down', redis: { status: 'down', error: (error as Error).message }, workers: null });
      return;
    }
    const workers = await this.store.listWorkers(this.config.workerStaleMs);
    response.status(200).json({
      status: workers.length > 0 ? 'ok' : 'degraded',
      redis: { status: 'up' },
      workers: { alive: workers.length, ids: workers.map((w) => w.workerId), stale_after_ms: this.config.workerStaleMs },
      model: this.model.id,
    });
  }

  @Get('metrics')
  @Openable('metrics')
  async prometheus(@Res() response: Response): Promise<void> {
    const body = await this.metrics.registry.metrics();
    response.setHeader('Content-Type', this.metrics.registry.contentType);
    response.send(body);
  }

  @Get('v1/models')
  models() {
    return { object: 'list', data: [this.modelObject()] };
  }

  /** The served model under its id or any alias a request's `model` may use (falcon, the checkpoint's name). */
  @Get('v1/models/:id')
  oneModel(@Param('id') id: string) {
    if (!this.model.names.includes(id)) throw ApiError.notFound('model', id);
    return this.modelObject();
  }

  private modelObject() {
    return { id: this.model.id, object: 'model', created: this.model.createdAt, owned_by: 'falconq', context_length: this.model.contextLength };
  }
}
