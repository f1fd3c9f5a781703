import { HttpStatus, Inject, Injectable } from '@nestjs/common';
import { API_CONFIG, type ApiConfig } from '../config/api-config';
import { ApiError } from '../http/api-error';

/** The multipart envelope (boundaries, part headers, the purpose field) around an uploaded file: far below 64 KiB. */
export const MULTIPART_ENVELOPE_BYTES = 64 * 1024;

/**
 * Bytes of uploads in flight per tenant on this api process (FALCONQ_UPLOAD_INFLIGHT_BYTES_PER_TENANT). An upload
 * reserves its Content-Length (or, sent chunked, the most an upload may be) before its body is read, and gives it back
 * when it ends in any way: stored, refused, or cut off by the client.
 */
@Injectable()
export class UploadBudget {
  private readonly inFlight = new Map<string, number>();
  readonly limit: number;
  private readonly largestUpload: number;

  constructor(@Inject(API_CONFIG) config: ApiConfig) {
    this.limit = config.limits.uploadInflightBytesPerTenant;
    this.largestUpload = config.limits.maxFileBytes + MULTIPART_ENVELOPE_BYTES;
  }

  /**
   * Reserves an upload's bytes for a tenant, or refuses it: 413 when the upload alone is over the limit (it can never
   * fit), 429 when the tenant's other uploads in flight leave no room for it now. Returns the release function (calling
   * it more than once releases once).
   */
  reserve(tenant: string, contentLength: number | null): () => void {
    const bytes = contentLength ?? this.largestUpload;
    if (this.limit > 0) {
      const sent = contentLength === null ? `a chunked upload (counted as ${bytes} bytes, the most one may be)` : `an upload of ${bytes} bytes`;
      if (bytes > this.limit) {
        throw ApiError.tooLarge(`${sent} is more than FALCONQ_UPLOAD_INFLIGHT_BYTES_PER_TENANT (${this.limit} bytes), the uploads one tenant may have in flight`, 'file');
      }
      const current = this.inFlight.get(tenant) ?? 0;
      if (current + bytes > this.limit) {
        throw new ApiError(HttpStatus.TOO_MANY_REQUESTS, 'rate_limit_error',
          `Too many upload bytes in flight: ${sent} on top of the ${current} bytes this tenant is uploading now is more than FALCONQ_UPLOAD_INFLIGHT_BYTES_PER_TENANT (${this.limit} bytes); retry when an upload has finished.`,
          { param: 'file', code: 'upload_bytes_in_flight', retryAfterSeconds: 1 });
      }
    }
    this.inFlight.set(tenant, (this.inFlight.get(tenant) ?? 0) + bytes);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.inFlight.get(tenant) ?? 0) - bytes;
      if (left > 0) this.inFlight.set(tenant, left);
      else this.inFlight.delete(tenant);
    };
  }

  /** Bytes in flight per tenant now (for the metrics). */
  snapshot(): ReadonlyMap<string, number> {
    return this.inFlight;
  }
}
