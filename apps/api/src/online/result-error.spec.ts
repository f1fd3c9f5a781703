import type { ItemResult } from '@app/contracts';
import { resultError } from './result-error';

const result = (fields: Partial<ItemResult>): ItemResult => ({ batchId: 'online_1', index: 0, customId: 'online_1', status: 'failed', attempts: 1, finishedAt: 0, ...fields });

describe('resultError (online answers from a worker\'s item outcome)', () => {
  it('answers 400 for the prompt error code the worker writes, naming the field in its message', () => {
    const error = resultError(result({ error: { code: 'invalid_request', message: 'prompt has 3000 tokens' } }));
    expect(error.getStatus()).toBe(400);
    expect(JSON.stringify(error.getResponse())).toContain('prompt has 3000 tokens');
  });

  it('answers 502 for a worker failure and 504 for a stopped request', () => {
    expect(resultError(result({ error: { code: 'worker_failed', message: 'boom' } })).getStatus()).toBe(502);
    expect(resultError(result({ status: 'expired', error: { code: 'batch_expired', message: 'late' } })).getStatus()).toBe(504);
  });
});
