import { Inject, Injectable, Logger, type BeforeApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import type { RedisClient } from '@app/redis';
import { RedisWebhookOutbox, type WebhookEvent, type WebhookOutbox } from '@app/store';
import { API_CONFIG, type ApiConfig, type WebhookConfig } from '../config/api-config';
import { REDIS } from '../infra/infra.module';
import { signWebhook } from './webhook-signature';

const POLL_MS = 250;
const BATCH = 20;
const MAX_BACKOFF_MS = 3_600_000;

/** OpenAI's event body: { object: "event", id, type, created_at (seconds), data: { id } }. */
export function webhookBody(event: WebhookEvent): string {
  return JSON.stringify({ object: 'event', id: event.id, type: event.type, created_at: Math.floor(event.createdAt / 1000), data: { id: event.batchId } });
}

/** Delay before the attempt after `attempts` failed ones: the first retry after retryMs, doubling, at most an hour. */
export function backoffMs(config: Pick<WebhookConfig, 'retryMs'>, attempts: number): number {
  return Math.min(config.retryMs * 2 ** Math.max(attempts - 1, 0), MAX_BACKOFF_MS);
}

/**
 * Sends the outbox's events to FALCONQ_WEBHOOK_URL, signed, each until its endpoint answers 2xx (retried with
 * backoff, then given up after FALCONQ_WEBHOOK_MAX_ATTEMPTS). Every api replica runs one; the outbox's lease keeps
 * them from sending the same event at once. On shutdown it stops claiming and lets the deliveries under way finish.
 */
@Injectable()
export class WebhookDispatcher implements OnModuleInit, BeforeApplicationShutdown {
  private readonly logger = new Logger('Webhooks');
  private readonly outbox: WebhookOutbox;
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private stopped = false;

  constructor(@Inject(API_CONFIG) private readonly config: ApiConfig, @Inject(REDIS) redis: RedisClient) {
    this.outbox = new RedisWebhookOutbox(redis, config.prefix);
  }

  async onModuleInit(): Promise<void> {
    const webhooks = this.config.webhooks;
    // Events wait in the outbox while no api with webhooks runs; turning them off stops writing new ones.
    await this.outbox.setEnabled(webhooks !== null);
    if (!webhooks) return;
    this.logger.log(`sending batch events to ${new URL(webhooks.url).origin}`);
    this.schedule(0);
  }

  /** Before Redis closes (InfraModule's onApplicationShutdown), so a delivery under way can record its outcome. */
  async beforeApplicationShutdown(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.drain().finally(() => this.schedule(POLL_MS));
    }, delayMs);
  }

  /** Sends what is due now, a page at a time, until nothing is. */
  private async drain(): Promise<void> {
    const webhooks = this.config.webhooks!;
    try {
      while (!this.stopped) {
        const events = await this.outbox.claimDue(Date.now(), webhooks.timeoutMs + 5_000, BATCH);
        if (events.length === 0) return;
        await Promise.all(events.map((event) => this.deliver(webhooks, event)));
      }
    } catch (error) {
      this.logger.warn(`webhook outbox unavailable (will retry): ${(error as Error).message}`);
    }
  }

  private async deliver(webhooks: WebhookConfig, event: WebhookEvent): Promise<void> {
    const body = webhookBody(event);
    let failure: string;
    try {
      const response = await fetch(webhooks.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'user-agent': 'falconq-webhooks', ...signWebhook(webhooks.secret, event.id, Math.floor(Date.now() / 1000), body) },
        body,
        signal: AbortSignal.timeout(webhooks.timeoutMs),
        redirect: 'manual',
      });
      await response.arrayBuffer().catch(() => undefined);
      if (response.ok) {
        await this.outbox.delivered(event.id);
        return;
      }
      failure = `HTTP ${response.status}`;
    } catch (error) {
      failure = (error as Error).message;
    }
    const attempted: WebhookEvent = { ...event, attempts: event.attempts + 1, lastError: failure };
    if (attempted.attempts >= webhooks.maxAttempts) {
      this.logger.error(`webhook ${event.id} (${event.type} ${event.batchId}) given up after ${attempted.attempts} attempts: ${failure}`);
      await this.outbox.giveUp(attempted);
      return;
    }
    const delay = backoffMs(webhooks, attempted.attempts);
    this.logger.warn(`webhook ${event.id} attempt ${attempted.attempts} failed (${failure}); next in ${delay} ms`);
    await this.outbox.retryAt(attempted, Date.now() + delay);
  }
}
