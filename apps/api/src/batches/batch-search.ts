import type { BatchStatus } from '@app/contracts';
import type { ListBatchesQuery } from '@app/store';
import { ApiError } from '../http/api-error';

// The query of a batch listing: paging (after, limit) and the search filters, status and metadata[key]=value.

const STATUSES: readonly BatchStatus[] = ['validating', 'failed', 'in_progress', 'finalizing', 'completed', 'expired', 'cancelling', 'cancelled'];
const METADATA_KEY = /^metadata\[(.+)\]$/;
const KNOWN = new Set(['after', 'limit', 'status']);

export type BatchSearch = Omit<ListBatchesQuery, 'owner' | 'kind'>;

/** Express's simple query parser leaves `metadata[k]=v` as the key "metadata[k]": read the pairs from the keys. */
export function batchSearchOf(query: Record<string, unknown>): BatchSearch {
  const text = (name: string): string | undefined => {
    const value = query[name];
    if (value === undefined) return undefined;
    if (typeof value !== 'string') throw ApiError.badRequest(`${name}: give it once`, { param: name });
    return value;
  };
  const limitText = text('limit');
  const limit = limitText === undefined ? 20 : Number(limitText);
  if (!Number.isInteger(limit) || limit < 1 || limit > 100) throw ApiError.badRequest('limit: must be an integer between 1 and 100', { param: 'limit' });
  const search: BatchSearch = { limit };
  const after = text('after');
  if (after) search.after = after;
  const status = text('status');
  if (status !== undefined) {
    const statuses = status.split(',').map((s) => s.trim());
    const unknown = statuses.find((s) => !(STATUSES as readonly string[]).includes(s));
    if (unknown !== undefined) throw ApiError.badRequest(`status: "${unknown}" is not a batch status (${STATUSES.join(', ')})`, { param: 'status' });
    search.statuses = statuses as BatchStatus[];
  }
  for (const key of Object.keys(query)) {
    const match = METADATA_KEY.exec(key);
    if (match) {
      search.metadata ??= {};
      search.metadata[match[1]] = text(key)!;
    } else if (!KNOWN.has(key)) {
      throw ApiError.badRequest(`${key}: is not a query parameter of this listing (after, limit, status, metadata[key])`, { param: key });
    }
  }
  return search;
}
