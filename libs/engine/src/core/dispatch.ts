// One message handler for both ways of running the engine (worker_thread and in-process), so they share a path.

import { toSerializedError } from '../errors';
import type { FromEngine, ToEngine } from '../thread/messages';
import type { EngineCore } from './engine-core';

/** Forwards the core's breakdown to the owner (once), in both modes. */
export function reportBreakdown(core: EngineCore, post: (message: FromEngine) => void): void {
  core.onBroken = (error) => post({ type: 'broken', error: toSerializedError(error) });
}

export function dispatchToCore(core: EngineCore, message: ToEngine, post: (message: FromEngine) => void): void {
  switch (message.type) {
    case 'submit': {
      const { request } = message;
      try {
        core.submit(
          request,
          {
            onToken: message.stream ? (event) => post({ type: 'token', event }) : undefined,
            onDone: (result) => post({ type: 'result', result }),
            onError: (error) => post({ type: 'rejected', id: request.id, error: toSerializedError(error) }),
          },
          message.submittedAt,
        );
      } catch (error) {
        post({ type: 'rejected', id: String(request?.id), error: toSerializedError(error) });
      }
      return;
    }
    case 'cancel':
      core.cancel(message.id);
      return;
    case 'stats':
      post({ type: 'stats', ticket: message.ticket, stats: core.stats() });
      return;
    case 'close':
      void core.close().finally(() => post({ type: 'closed' }));
      return;
  }
}
