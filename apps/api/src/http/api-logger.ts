import { ConsoleLogger, type LogLevel } from '@nestjs/common';

// Nest's own start-up lines ("Mapped {/v1/batches, POST} route", "dependencies initialized", one per route and
// module, about 40 of them) are debug-level detail for falconq: shown with LOG_LEVEL=debug or verbose, hidden
// otherwise. Everything else follows LOG_LEVEL as Nest's levels do.

const STARTUP_CONTEXTS = new Set(['RoutesResolver', 'RouterExplorer', 'InstanceLoader', 'NestFactory', 'NestApplication']);

export const LOG_LEVELS = ['error', 'warn', 'log', 'debug', 'verbose'] as const;
export type ApiLogLevel = (typeof LOG_LEVELS)[number];

/** The levels printed at a given LOG_LEVEL: that one and every more severe one. */
export function levelsFrom(level: ApiLogLevel): LogLevel[] {
  return ['fatal', ...LOG_LEVELS.slice(0, LOG_LEVELS.indexOf(level) + 1)];
}

export class ApiLogger extends ConsoleLogger {
  constructor(level: ApiLogLevel) {
    super({ logLevels: levelsFrom(level) });
  }

  override log(message: unknown, ...rest: unknown[]): void {
    const context = rest.at(-1);
    if (typeof context === 'string' && STARTUP_CONTEXTS.has(context) && !this.isLevelEnabled('debug')) return;
    super.log(message, ...(rest as [string?]));
  }
}
