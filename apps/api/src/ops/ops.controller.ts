import { Controller, Get, HttpStatus, Inject, Param, Res } from '@nestjs/common';
import { ApiError } from '../http/api-error';
import { ApiBearerAuth, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import type { RedisStore } from '@app/store';
import { Openable } from '../auth/api-key.guard';
import { API_CONFIG, type ApiConfig } from '../config/api-config';
import { STORE } from '../infra/infra.module';
import { REDIS_RETRY_AFTER_S, RedisAvailability } from '../infra/redis-availability';
import { SERVED_MODEL, type ServedModel } from '../model/served-model';
import { MetricsService } from './metrics.service';

const HEALTH_REDIS_TIMEOUT_MS = 1000;

function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

@ApiTags('operations')
@ApiBearerAuth()
@Controller()
export class OpsController {
  constructor(
    @Inject(API_CONFIG) private readonly config: ApiConfig,
    @Inject(STORE) private readonly store: RedisStore,
    @Inject(SERVED_MODEL) private readonly model: ServedModel,
    private readonly metrics: MetricsService,
    private readonly redis: RedisAvailability,
  ) {}

  /**
   * 200 when Redis answers (status "degraded" when no worker was seen recently), 503 when it does not: at once while
   * the connection is down, within HEALTH_REDIS_TIMEOUT_MS when Redis is connected but does not answer.
   */
  @Get('health')
  @Openable('health')
  async health(@Res() response: Response): Promise<void> {
    const down = (reason: string) => {
      response.setHeader('Retry-After', String(REDIS_RETRY_AFTER_S));
      response.status(HttpStatus.SERVICE_UNAVAILABLE).json({ status: 'down', redis: { status: 'down', error: reason }, workers: null });
    };
    if (!this.redis.isUp()) return down('not connected');
    let workers: Awaited<ReturnType<RedisStore['workers']['list']>>;
    try {
      workers = await withTimeout(this.store.workers.list(this.config.workerStaleMs), HEALTH_REDIS_TIMEOUT_MS);
    } catch (error) {
      return down((error as Error).message);
    }
    response.status(200).json({
      status: workers.length > 0 ? 'ok' : 'degraded',
      redis: { status: 'up' },
      workers: { alive: workers.length, ids: workers.map((w) => w.workerId), stale_after_ms: this.config.workerStaleMs },
      model: this.model.id,
      // Lets a launcher tell its own api from another process answering on the same port.
      pid: process.pid,
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
