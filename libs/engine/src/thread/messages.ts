// Messages between GenerationEngine (owner side) and the engine thread. Plain data only (structured clone).

import type { EngineInfo, EngineStats, GenerationRequest, GenerationResult, TokenEvent } from '../api';
import type { SerializedError } from '../errors';

export type ToEngine =
  | { type: 'submit'; request: GenerationRequest; stream: boolean; submittedAt: number }
  | { type: 'cancel'; id: string }
  | { type: 'stats'; ticket: number }
  | { type: 'close' };

export type FromEngine =
  | { type: 'ready'; info: EngineInfo }
  | { type: 'start-failed'; error: SerializedError }
  | { type: 'token'; event: TokenEvent }
  | { type: 'result'; result: GenerationResult }
  | { type: 'rejected'; id: string; error: SerializedError }
  | { type: 'stats'; ticket: number; stats: EngineStats }
  /** The engine failed a run and could not start afresh: it serves nothing more. */
  | { type: 'broken'; error: SerializedError }
  | { type: 'closed' };
