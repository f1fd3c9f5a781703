import { Inject, Injectable } from '@nestjs/common';
import type { IncomingHttpHeaders } from 'node:http';
import { API_CONFIG, type ApiConfig } from '../config/api-config';
import { hashKey } from '../config/api-keys';
import { OPEN_MODE_PRINCIPAL, type Principal } from './principal';

export type Authentication = { ok: true; principal: Principal } | { ok: false; reason: string };

export interface AuthenticateOptions {
  /**
   * Accept HTTP Basic (any user name, the key as password). Only for the pages a browser opens (dashboard, docs):
   * browsers resend cached Basic credentials on cross-site requests, so a route that took them could be forged.
   */
  allowBasic?: boolean;
}

/** Finds the caller from `Authorization: Bearer <key>` or `X-Api-Key` (Basic only where the caller allows it). */
@Injectable()
export class KeyAuthenticator {
  constructor(@Inject(API_CONFIG) private readonly config: ApiConfig) {}

  get openMode(): boolean {
    return this.config.keys.size === 0;
  }

  authenticate(headers: IncomingHttpHeaders, options: AuthenticateOptions = {}): Authentication {
    if (this.openMode) return { ok: true, principal: OPEN_MODE_PRINCIPAL };
    const key = keyFromHeaders(headers, options.allowBasic ?? false);
    if (!key) {
      if (!options.allowBasic && usesBasicAuth(headers)) {
        return { ok: false, reason: 'HTTP Basic credentials are accepted only by the dashboard and the docs; send the key as "Authorization: Bearer <key>".' };
      }
      return { ok: false, reason: 'Missing API key: send it as "Authorization: Bearer <key>".' };
    }
    const principal = this.config.keys.get(hashKey(key));
    if (!principal) return { ok: false, reason: 'Invalid API key.' };
    return { ok: true, principal };
  }
}

/** Whether the request carries HTTP Basic credentials (what a browser resends by itself). */
export function usesBasicAuth(headers: IncomingHttpHeaders): boolean {
  return /^basic\s/i.test(headers.authorization ?? '');
}

function keyFromHeaders(headers: IncomingHttpHeaders, allowBasic: boolean): string | null {
  const authorization = headers.authorization;
  if (authorization) {
    const [scheme, value] = authorization.split(' ', 2);
    if (scheme?.toLowerCase() === 'bearer' && value) return value.trim();
    if (allowBasic && scheme?.toLowerCase() === 'basic' && value) {
      const decoded = Buffer.from(value, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      return colon >= 0 ? decoded.slice(colon + 1) : decoded;
    }
  }
  const apiKey = headers['x-api-key'];
  return typeof apiKey === 'string' && apiKey ? apiKey : null;
}
