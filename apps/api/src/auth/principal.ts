import { createParamDecorator, type ExecutionContext } from '@nestjs/common';
import type { Request } from 'express';
import type { KeyPrincipal } from '../config/api-keys';

export type Principal = KeyPrincipal;

/** Who calls when the service runs without keys (a loud warning is logged at start). */
export const OPEN_MODE_PRINCIPAL: Principal = { tenant: 'default', admin: true, keyId: 'open' };

export interface AuthenticatedRequest extends Request {
  principal?: Principal;
}

export const CurrentPrincipal = createParamDecorator((_: unknown, context: ExecutionContext): Principal => {
  const principal = context.switchToHttp().getRequest<AuthenticatedRequest>().principal;
  if (!principal) throw new Error('route reached without a principal: is the ApiKeyGuard installed?');
  return principal;
});

/** Non-admins see only their own resources; others' are reported as not found, never as forbidden. */
export function canSee(principal: Principal, owner: string): boolean {
  return principal.admin || principal.tenant === owner;
}
