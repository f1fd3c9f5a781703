import type { NextFunction, Request, Response } from 'express';
import type { KeyAuthenticator } from './key-authenticator';

/**
 * Express middleware for routes mounted outside Nest's router (Bull Board, Swagger UI), which Nest's guards do not
 * cover. These are pages a browser opens, so HTTP Basic is accepted here (and only here); cross-site writes with those
 * cached credentials are refused earlier by the Origin check (refuseCrossSiteWrites). It answers 401/403 itself and
 * never calls next() after answering.
 */
export function requireKeyMiddleware(authenticator: KeyAuthenticator, options: { adminOnly: boolean; realm: string }) {
  return (request: Request, response: Response, next: NextFunction): void => {
    const auth = authenticator.authenticate(request.headers, { allowBasic: true });
    if (!auth.ok) {
      response.status(401).setHeader('WWW-Authenticate', `Basic realm="${options.realm}", charset="UTF-8"`);
      response.json({ error: { message: auth.reason, type: 'authentication_error', param: null, code: 'invalid_api_key' } });
      return;
    }
    if (options.adminOnly && !auth.principal.admin) {
      response.status(403).json({ error: { message: 'This route needs an admin key.', type: 'permission_error', param: null, code: 'admin_only' } });
      return;
    }
    next();
  };
}
