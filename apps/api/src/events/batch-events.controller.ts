import { Controller, Get, Inject, Param, Req, Res } from '@nestjs/common';
import { ApiBearerAuth, ApiProduces, ApiTags } from '@nestjs/swagger';
import type { Request, Response } from 'express';
import type { BatchEvent } from '@app/contracts';
import { finishedAtOf, isFinalStatus, type BatchRecord, type BatchStatus, type ResultsStore } from '@app/store';
import { CurrentPrincipal, type Principal } from '../auth/principal';
import { BatchLifecycleService } from '../batches/batch-lifecycle.service';
import { RESULTS_STORE } from '../infra/infra.module';
import { InFlightRequests } from '../http/in-flight-requests';

const KEEPALIVE_MS = 15_000;

/**
 * The current state of a batch as a progress event (what a late subscriber sees first). The rates of a finished
 * batch are over its run (start to final status), so they stay what they were when it finished.
 */
export function snapshotEvent(batch: BatchRecord, now = Date.now()): BatchEvent {
  const counts = batch.requestCounts;
  const done = counts.completed + counts.failed;
  const end = finishedAtOf(batch) ?? now;
  const elapsed = Math.max(end - (batch.inProgressAt ?? end), 1) / 1000;
  const itemsPerSecond = batch.inProgressAt ? done / elapsed : 0;
  return {
    type: 'progress', batchId: batch.id, counts, itemsPerSecond,
    tokensPerSecond: batch.inProgressAt ? batch.completionTokens / elapsed : 0,
    etaSeconds: itemsPerSecond > 0 ? (counts.total - done) / itemsPerSecond : null, at: now,
  };
}

/**
 * Server-sent events of one batch: first its current state, then counts (throttled), one event per finished item,
 * and the final status, after which the stream ends.
 */
@ApiTags('events')
@ApiBearerAuth()
@Controller()
export class BatchEventsController {
  constructor(
    @Inject(RESULTS_STORE) private readonly store: ResultsStore,
    private readonly lifecycle: BatchLifecycleService,
    private readonly inFlight: InFlightRequests,
  ) {}

  @Get(['batches/:id/events', 'v1/batches/:id/events'])
  @ApiProduces('text/event-stream')
  async stream(@CurrentPrincipal() principal: Principal, @Param('id') id: string, @Req() request: Request, @Res() response: Response): Promise<void> {
    await this.lifecycle.visibleBatch(principal, id);
    response.status(200);
    response.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
    response.setHeader('Cache-Control', 'no-cache, no-transform');
    response.setHeader('Connection', 'keep-alive');
    response.setHeader('X-Accel-Buffering', 'no');
    response.flushHeaders();

    let closed = false;
    const send = (event: BatchEvent) => {
      if (closed) return;
      response.write(`event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`);
      if (event.type === 'status' && isFinalStatus(event.status as BatchStatus)) finish();
    };
    const keepalive = setInterval(() => response.write(': keepalive\n\n'), KEEPALIVE_MS);
    const subscription: { unsubscribe?: () => Promise<void> } = {};
    const finish = () => {
      if (closed) return;
      closed = true;
      forget();
      clearInterval(keepalive);
      void subscription.unsubscribe?.();
      response.end();
    };
    const forget = this.inFlight.addStream(finish);
    response.on('close', finish);
    // A client that hung up before this handler ran emitted 'close' already.
    if (response.destroyed || request.destroyed) return finish();

    // Subscribe before reading the state, so nothing falls between the snapshot and the live events.
    const buffered: BatchEvent[] = [];
    let live = false;
    subscription.unsubscribe = await this.store.subscribe(id, (event) => (live ? send(event) : buffered.push(event)));
    // The client may have gone while the subscription was being set up: finish() ran before there was one to undo.
    if (closed) return void subscription.unsubscribe();
    const batch = await this.store.getBatch(id);
    if (!batch) return finish();
    send(snapshotEvent(batch));
    if (isFinalStatus(batch.status)) {
      send({ type: 'status', batchId: id, status: batch.status, counts: batch.requestCounts, at: Date.now() });
      return;
    }
    live = true;
    for (const event of buffered) send(event);
  }
}
