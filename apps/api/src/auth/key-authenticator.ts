import { Inject, Injectable } from '@nestjs/common';
import type { IncomingHttpHeaders } from 'node:http';
import { API_CONFIG, type ApiConfig } from '../config/api-config';
import { hashKey } from '../config/api-keys';
import { OPEN_MODE_PRINCIPAL, type Principal } from './principal';

export type Authentication = { ok: true; principal: Principal } | { ok: false; reason: string };

/** Finds the caller from `Authorization: Bearer <key>` (or Basic with the key as password, for the dashboard). */
@Injectable()
export class KeyAuthenticator {
  constructor(@Inject(API_CONFIG) private readonly config: ApiConfig) {}

  get openMode(): boolean {
    return this.config.keys.size === 0;
  }

  authenticate(headers: IncomingHttpHeaders): Authentication {
    if (this.openMode) return { ok: true, principal: OPEN_MODE_PRINCIPAL };
    const key = keyFromHeaders(headers);
    if (!key) return { ok: false, reason: 'Missing API key: send it as "Authorization: Bearer <key>".' };
    const principal = this.config.keys.get(hashKey(key));
    if (!principal) return { ok: false, reason: 'Invalid API key.' };
    return { ok: true, principal };
  }
}

function keyFromHeaders(headers: IncomingHttpHeaders): string | null {
  const authorization = headers.authorization;
  if (authorization) {
    const [scheme, value] = authorization.split(' ', 2);
    if (scheme?.toLowerCase() === 'bearer' && value) return value.trim();
    if (scheme?.toLowerCase() === 'basic' && value) {
      const decoded = Buffer.from(value, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      return colon >= 0 ? decoded.slice(colon + 1) : decoded;
    }
  }
  const apiKey = headers['x-api-key'];
  return typeof apiKey === 'string' && apiKey ? apiKey : null;
}
