import { Inject, Injectable, Logger, type BeforeApplicationShutdown } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { Server } from 'node:http';
import { API_CONFIG, type ApiConfig } from '../config/api-config';

/**
 * Long-lived requests and graceful shutdown. On SIGTERM Nest stops the HTTP server, which waits for open connections:
 * event streams would hold it forever, and an online request may wait minutes for its result. So first the event
 * streams are ended (clients reconnect to another replica), then online requests get FALCONQ_SHUTDOWN_GRACE_MS to
 * finish, and whatever is still open after that is cut.
 */
@Injectable()
export class InFlightRequests implements BeforeApplicationShutdown {
  private readonly logger = new Logger('Shutdown');
  private readonly streams = new Set<() => void>();
  private waiting = 0;

  constructor(@Inject(API_CONFIG) private readonly config: ApiConfig, private readonly adapterHost: HttpAdapterHost) {}

  /** Registers an event stream's closer; call the returned function when the stream ends by itself. */
  addStream(close: () => void): () => void {
    this.streams.add(close);
    return () => this.streams.delete(close);
  }

  /** Counts an awaited long request (online completion) until it settles. */
  async track<T>(work: () => Promise<T>): Promise<T> {
    this.waiting++;
    try {
      return await work();
    } finally {
      this.waiting--;
    }
  }

  async beforeApplicationShutdown(): Promise<void> {
    for (const close of [...this.streams]) close();
    const deadline = Date.now() + this.config.shutdownGraceMs;
    while (this.waiting > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    if (this.waiting > 0) {
      this.logger.warn(`${this.waiting} online request(s) still waiting after FALCONQ_SHUTDOWN_GRACE_MS; closing their connections`);
      (this.adapterHost.httpAdapter.getHttpServer() as Server).closeAllConnections();
    }
  }
}
