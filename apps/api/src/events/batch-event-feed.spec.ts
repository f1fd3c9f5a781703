import type { BatchEvent } from '@app/contracts';
import type { BatchRecord } from '@app/store';
import { BatchEventFeed } from './batch-event-feed';

const item = (index: number): BatchEvent => ({ type: 'item', batchId: 'b', index, customId: `c${index}`, status: 'succeeded', at: 0 });

function batch(status: BatchRecord['status'], completed: number): BatchRecord {
  return { id: 'b', status, requestCounts: { total: 2, completed, failed: 0 }, inProgressAt: 1, completionTokens: 0 } as BatchRecord;
}

/** A store whose list and record change between reads, as they do while workers record results. */
function racingStore(script: { items: BatchEvent[]; batch: BatchRecord }[]) {
  let step = 0;
  return {
    events: { itemEventsSince: async (_: string, position: number) => script[Math.min(step, script.length - 1)].items.slice(position) },
    batches: { get: async () => script[Math.min(step++, script.length - 1)].batch },
  };
}

describe('BatchEventFeed', () => {
  it('sends the items that finished between reading the list and reading a final batch before the final status', async () => {
    // The list is read with item 0 only; the last item and the completion land before the batch record is read.
    const store = racingStore([{ items: [item(0)], batch: batch('completed', 2) }, { items: [item(0), item(1)], batch: batch('completed', 2) }]);
    const sent: [BatchEvent, number][] = [];
    let ended = false;
    const feed = new BatchEventFeed(store, 'b', 0, (event, id) => sent.push([event, id]), () => (ended = true));
    await feed.wake();
    expect(sent.filter(([e]) => e.type === 'item').map(([e, id]) => [e.type === 'item' && e.index, id])).toEqual([[0, 1], [1, 2]]);
    expect(sent[sent.length - 1][0]).toMatchObject({ type: 'status', status: 'completed' });
    expect(ended).toBe(true);
  });

  it('resumes after the position it is given and numbers events on from there', async () => {
    const store = racingStore([{ items: [item(0), item(1)], batch: batch('completed', 2) }]);
    const sent: [BatchEvent, number][] = [];
    const feed = new BatchEventFeed(store, 'b', 1, (event, id) => sent.push([event, id]), () => undefined);
    await feed.wake();
    expect(sent.filter(([e]) => e.type === 'item').map(([e, id]) => [e.type === 'item' && e.index, id])).toEqual([[1, 2]]);
  });

  it('keeps the stream open when Redis fails, and reads on at the next wake-up', async () => {
    let down = true;
    const store = {
      events: {
        itemEventsSince: async (_: string, position: number) => {
          if (down) throw new Error('Connection is closed.');
          return [item(0), item(1)].slice(position);
        },
      },
      batches: { get: async () => batch('completed', 2) },
    };
    const sent: BatchEvent[] = [];
    let ended = false;
    const feed = new BatchEventFeed(store, 'b', 0, (event) => sent.push(event), () => (ended = true));
    await feed.wake();
    expect([sent.length, ended]).toEqual([0, false]);
    down = false;
    await feed.wake();
    expect(sent.map((e) => e.type)).toEqual(['item', 'item', 'progress', 'status']);
    expect(ended).toBe(true);
  });
});
