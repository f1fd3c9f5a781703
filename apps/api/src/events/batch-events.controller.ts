import { Controller, Get, Inject, Param, Req, Res } from '@nestjs/common';
import { ApiBearerAuth, ApiHeader, ApiProduces, ApiTags } from '@nestjs/swagger';
import type { Request, Response } from 'express';
import type { RedisStore, Unsubscribe } from '@app/store';
import { CurrentPrincipal, type Principal } from '../auth/principal';
import { BatchLifecycleService } from '../batches/batch-lifecycle.service';
import { API_CONFIG, type ApiConfig } from '../config/api-config';
import { STORE } from '../infra/infra.module';
import { InFlightRequests } from '../http/in-flight-requests';
import { ApiError } from '../http/api-error';
import { BatchEventFeed, FEED_POLL_MS } from './batch-event-feed';

export { snapshotEvent } from './batch-snapshot';

/** Last-Event-ID: the number of item events the client has (the `id` of the last event it received). */
function resumePosition(header: string | undefined): number {
  if (header === undefined || header === '') return 0;
  const position = Number(header);
  if (!Number.isInteger(position) || position < 0) throw ApiError.badRequest('Last-Event-ID: must be the id of an event of this stream (an integer >= 0)', { param: 'Last-Event-ID' });
  return position;
}

/**
 * Server-sent events of one batch: its current state, counts (throttled), one event per finished item, and the final
 * status, after which the stream ends. Every event carries an id; reconnecting with Last-Event-ID resumes after it.
 * The stream survives Redis restarts: it re-reads the batch after every wake-up and every few seconds.
 */
@ApiTags('events')
@ApiBearerAuth()
@Controller()
export class BatchEventsController {
  constructor(
    @Inject(STORE) private readonly store: RedisStore,
    @Inject(API_CONFIG) private readonly config: ApiConfig,
    private readonly lifecycle: BatchLifecycleService,
    private readonly inFlight: InFlightRequests,
  ) {}

  @Get(['batches/:id/events', 'v1/batches/:id/events'])
  @ApiProduces('text/event-stream')
  @ApiHeader({ name: 'Last-Event-ID', required: false, description: 'Resume after this event (sent by EventSource on reconnect).' })
  async stream(@CurrentPrincipal() principal: Principal, @Param('id') id: string, @Req() request: Request, @Res() response: Response): Promise<void> {
    const position = resumePosition(request.header('last-event-id'));
    await this.lifecycle.visibleBatch(principal, id);
    response.status(200);
    response.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
    response.setHeader('Cache-Control', 'no-cache, no-transform');
    response.setHeader('Connection', 'keep-alive');
    response.setHeader('X-Accel-Buffering', 'no');
    response.flushHeaders();

    let closed = false;
    let unsubscribe: Unsubscribe | undefined;
    const feed = new BatchEventFeed(this.store, id, position,
      (event, eventId) => void (closed || response.write(`event: ${event.type}\nid: ${eventId}\ndata: ${JSON.stringify(event)}\n\n`)),
      () => finish());
    const keepalive = setInterval(() => response.write(': keep-alive\n\n'), this.config.sseKeepaliveMs);
    const poll = setInterval(() => void feed.wake(), FEED_POLL_MS);
    const finish = () => {
      if (closed) return;
      closed = true;
      forget();
      feed.stop();
      clearInterval(keepalive);
      clearInterval(poll);
      void unsubscribe?.().catch(() => undefined);
      response.end();
    };
    const forget = this.inFlight.addStream(finish);
    response.on('close', finish);
    // A client that hung up before this handler ran emitted 'close' already.
    if (response.destroyed || request.destroyed) return finish();

    // Pub/sub only wakes the feed early; the first read does not wait for it (Redis may be restarting).
    void this.store.events.subscribe(id, () => void feed.wake()).then(
      (release) => (closed ? void release().catch(() => undefined) : (unsubscribe = release)),
      () => undefined,
    );
    await feed.wake();
  }
}
