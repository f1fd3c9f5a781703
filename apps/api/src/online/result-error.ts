import { HttpStatus } from '@nestjs/common';
import { ITEM_ERRORS, type ItemResult } from '@app/contracts';
import { ApiError } from '../http/api-error';

/**
 * The HTTP answer to an online request whose item did not succeed: the request's own fault (invalid_request) is a
 * 400, a stop (cancelled, expired) a 504, anything else the workers' failure, a 502.
 */
export function resultError(result: ItemResult): ApiError {
  const error = result.error ?? { code: 'worker_failed', message: ITEM_ERRORS.worker_failed };
  if (error.code === 'invalid_request') return ApiError.badRequest(error.message, { code: error.code });
  if (result.status === 'cancelled' || result.status === 'expired') return new ApiError(HttpStatus.GATEWAY_TIMEOUT, 'server_error', error.message, { code: error.code });
  return new ApiError(HttpStatus.BAD_GATEWAY, 'server_error', `Generation failed: ${error.message}`, { code: error.code });
}
