// Lua scripts: each state change of a batch is one atomic step, so several api replicas and workers can race safely.
// They apply the lifecycle of libs/contracts (embedded below as data, never restated); events are built with cjson
// and published from inside the script, in the same step as the change they describe. Each script is loaded once
// per connection (defineCommand: EVALSHA, falling back to EVAL after a Redis restart).
import { BATCH_TRANSITIONS, FINAL_BATCH_STATUSES, ITEM_ERRORS, RETRYABLE_STATUSES, SETTLEMENT, STOPPED_ITEM } from '@app/contracts';
import type { RedisClient } from '@app/redis';

const LIFECYCLE_JSON = JSON.stringify({
  transitions: BATCH_TRANSITIONS,
  final: Object.fromEntries(FINAL_BATCH_STATUSES.map((status) => [status, true])),
  retryable: Object.fromEntries(RETRYABLE_STATUSES.map((status) => [status, true])),
  settlement: SETTLEMENT,
  stopped: STOPPED_ITEM,
  itemErrors: ITEM_ERRORS,
});

/** Shared helpers, prepended to every batch script. KEYS[1] is always the batch hash. */
const HELPERS = `
local LIFECYCLE = cjson.decode([==[${LIFECYCLE_JSON}]==])
local function counts_of(b)
  return { total = tonumber(b[1]) or 0, completed = tonumber(b[2]) or 0, failed = tonumber(b[3]) or 0 }
end
local function read_counts()
  return counts_of(redis.call('HMGET', KEYS[1], 'total', 'completed', 'failed'))
end
-- The history lists are written only for batches someone may read them for (history_max 0: online requests; a batch
-- stored before the field existed keeps the default).
local function history_size()
  local own = redis.call('HGET', KEYS[1], 'history_max')
  if own then return tonumber(own) end
  return 200
end
local function emit(history_key, channel, event)
  local json = cjson.encode(event)
  local history_max = history_size()
  if history_max > 0 then
    redis.call('RPUSH', history_key, json)
    redis.call('LTRIM', history_key, -history_max, -1)
  end
  redis.call('PUBLISH', channel, json)
  return json
end
-- A final status of a batch (not an online request) goes to the webhook outbox, in the same step as the change, when
-- an api sends webhooks. keys: { enabled flag, events hash, due zset }.
local function enqueue_webhook(webhook_keys, batch_id, status, now)
  if redis.call('EXISTS', webhook_keys[1]) == 0 then return end
  if redis.call('HGET', KEYS[1], 'kind') == 'online' then return end
  local id = 'evt_' .. string.gsub(batch_id, '^batch_', '') .. '_' .. status .. '_' .. now
  redis.call('HSET', webhook_keys[2], id, cjson.encode({ id = id, type = 'batch.' .. status, batchId = batch_id, createdAt = now, attempts = 0 }))
  redis.call('ZADD', webhook_keys[3], now, id)
end
local function allowed(from, to)
  for _, s in ipairs(LIFECYCLE.transitions[from] or {}) do if s == to then return true end end
  return false
end
-- Moves the batch to a status and does what that status needs: timestamps, the indexes of active batches, the
-- batch's own retention and its webhook once final, and the status event.
-- batch_keys: the keys that share the batch's retention; idx: { deadlines, creating, active-set prefix };
-- webhook_keys: { enabled flag, events hash, due zset }.
local function move_to(to, now, batch_keys, idx, history_key, channel, webhook_keys)
  local b = redis.call('HMGET', KEYS[1], 'status', 'owner', 'id', 'retention_s')
  redis.call('HSET', KEYS[1], 'status', to, to .. '_at', now)
  if b[1] == 'validating' then redis.call('ZREM', idx[2], b[3]) end
  if LIFECYCLE.final[to] then
    if to == 'completed' then redis.call('HSET', KEYS[1], 'finalizing_at', now) end
    redis.call('SREM', idx[3] .. b[2], b[3])
    redis.call('ZREM', idx[1], b[3])
    redis.call('ZREM', idx[2], b[3])
    local seconds = tonumber(b[4]) or 0
    if seconds > 0 then
      for _, k in ipairs(batch_keys) do redis.call('EXPIRE', k, seconds) end
    end
    enqueue_webhook(webhook_keys, b[3], to, now)
  end
  emit(history_key, channel, { type = 'status', batchId = b[3], status = to, counts = read_counts(), at = now })
end
`;

/**
 * Creates a batch in one step: refuses it when its Idempotency-Key is taken (returns the holder) or when the owner is
 * at its in-flight limit, else writes the batch, moves its staged items into place, indexes it and claims the key.
 * KEYS: 1 batch, 2 items, 3 custom-ids, 4 staged items, 5 staged custom-ids, 6 deadlines, 7 creating, 8 active set,
 *       9 all batches, 10 owner batches, 11 idempotency key
 * ARGV: 1 batch fields (json object), 2 created at, 3 expires at, 4 listed (1/0), 5 in-flight limit (0 = none),
 *       6 idempotency value ('' = no key), 7 idempotency ttl s
 */
const CREATE_BATCH = `
if ARGV[6] ~= '' then
  local holder = redis.call('GET', KEYS[11])
  if holder then return { 'key-taken', holder } end
end
local listed = ARGV[4] == '1'
local limit = tonumber(ARGV[5])
if listed and limit > 0 then
  local active = redis.call('SCARD', KEYS[8])
  if active >= limit then return { 'limit', tostring(active) } end
end
if redis.call('EXISTS', KEYS[1]) == 1 then return { 'exists' } end
local fields = cjson.decode(ARGV[1])
local flat = {}
for k, v in pairs(fields) do table.insert(flat, k); table.insert(flat, tostring(v)) end
redis.call('HSET', KEYS[1], unpack(flat))
if redis.call('EXISTS', KEYS[4]) == 1 then
  redis.call('RENAME', KEYS[4], KEYS[2]); redis.call('PERSIST', KEYS[2])
  redis.call('RENAME', KEYS[5], KEYS[3]); redis.call('PERSIST', KEYS[3])
end
redis.call('ZADD', KEYS[6], ARGV[3], fields.id)
redis.call('ZADD', KEYS[7], ARGV[2], fields.id)
if listed then
  redis.call('SADD', KEYS[8], fields.id)
  redis.call('ZADD', KEYS[9], ARGV[2], fields.id)
  redis.call('ZADD', KEYS[10], ARGV[2], fields.id)
end
if ARGV[6] ~= '' then redis.call('SET', KEYS[11], ARGV[6], 'EX', tonumber(ARGV[7])) end
return { 'created' }
`;

/**
 * Records one item's outcome, once, and settles the batch when it was the last one (SETTLEMENT).
 * KEYS: 1 batch, 2 results, 3 history, 4 items, 5 custom-ids, 6 deadlines, 7 stats, 8 creating,
 *       9 finished (every item event, in order, untrimmed: what an event stream resumes from),
 *       10-12 webhooks enabled/events/due
 * ARGV: 1 index, 2 result json ('' for a stop: built here), 3 outcome, 4 now ms, 5 completion tokens, 6 custom id,
 *       7 events channel, 8 active-set prefix, 9 progress interval ms, 10 attempts, 11 worker id, 12 finished at,
 *       13 prompt tokens
 * The cluster-wide stats count items by status (items_succeeded, items_failed, items_cancelled, items_expired).
 * Returns 'recorded', 'duplicate', 'missing' (no such batch) or 'running' (a stop for a batch that still runs).
 */
const RECORD_RESULT = `${HELPERS}
if redis.call('EXISTS', KEYS[1]) == 0 then return 'missing' end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 'duplicate' end
local now = tonumber(ARGV[4])
local b = redis.call('HMGET', KEYS[1], 'status', 'expires_at', 'id')
local item_status = ARGV[3]
local json = ARGV[2]
if ARGV[3] == 'stopped' then
  local stop = LIFECYCLE.stopped.byBatchStatus[b[1]]
  if not stop and now >= tonumber(b[2]) then stop = LIFECYCLE.stopped.pastExpiry end
  if not stop then return 'running' end
  item_status = stop.status
  local result = { batchId = b[3], index = tonumber(ARGV[1]), customId = ARGV[6], status = stop.status,
    error = { code = stop.code, message = LIFECYCLE.itemErrors[stop.code] }, attempts = tonumber(ARGV[10]),
    finishedAt = tonumber(ARGV[12]) }
  if ARGV[11] ~= '' then result.workerId = ARGV[11] end
  json = cjson.encode(result)
end
redis.call('HSET', KEYS[2], ARGV[1], json)
if item_status == 'succeeded' then
  redis.call('HINCRBY', KEYS[1], 'completed', 1)
else
  redis.call('HINCRBY', KEYS[1], 'failed', 1)
end
redis.call('HINCRBY', KEYS[7], 'items_' .. item_status, 1)
local prompt_tokens = tonumber(ARGV[13]) or 0
if prompt_tokens > 0 then redis.call('HINCRBY', KEYS[1], 'prompt_tokens', prompt_tokens) end
local tokens = tonumber(ARGV[5])
if tokens > 0 then
  redis.call('HINCRBY', KEYS[1], 'completion_tokens', tokens)
  redis.call('HINCRBY', KEYS[7], 'completion_tokens', tokens)
end
local s = redis.call('HMGET', KEYS[1], 'total', 'completed', 'failed', 'status', 'in_progress_at', 'completion_tokens', 'progress_at')
local counts = counts_of(s)
local item_json = emit(KEYS[3], ARGV[7],
  { type = 'item', batchId = b[3], index = tonumber(ARGV[1]), customId = ARGV[6], status = item_status, at = now })
if history_size() > 0 then
  redis.call('RPUSH', KEYS[9], item_json)
  local own_ttl = redis.call('PTTL', KEYS[1])
  if own_ttl > 0 then redis.call('PEXPIRE', KEYS[9], own_ttl) end
end
local done = counts.completed + counts.failed
if done >= counts.total then
  local final = LIFECYCLE.settlement.whenAllItemsDone[s[4]]
  if final then
    if now >= tonumber(b[2]) and LIFECYCLE.settlement.pastExpiry[final] then final = LIFECYCLE.settlement.pastExpiry[final] end
    move_to(final, now, { KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[9] }, { KEYS[6], KEYS[8], ARGV[8] }, KEYS[3], ARGV[7],
      { KEYS[10], KEYS[11], KEYS[12] })
  end
  return 'recorded'
end
local last = tonumber(s[7]) or 0
if now - last >= tonumber(ARGV[9]) then
  redis.call('HSET', KEYS[1], 'progress_at', now)
  local started = tonumber(s[5]) or now
  local elapsed = math.max(now - started, 1) / 1000
  local ips = done / elapsed
  local tps = (tonumber(s[6]) or 0) / elapsed
  local eta = cjson.null
  if ips > 0 then eta = (counts.total - done) / ips end
  emit(KEYS[3], ARGV[7], { type = 'progress', batchId = b[3], counts = counts, itemsPerSecond = ips,
    tokensPerSecond = tps, etaSeconds = eta, at = now })
end
return 'recorded'
`;

/**
 * A transition the lifecycle allows (BATCH_TRANSITIONS), or nothing.
 * KEYS: 1 batch, 2 results, 3 history, 4 items, 5 custom-ids, 6 deadlines, 7 creating, 8 finished,
 *       9-11 webhooks enabled/events/due
 * ARGV: 1 new status, 2 now ms, 3 events channel, 4 active-set prefix, 5 errors json ('' = none)
 * Returns { 1, new status } when changed, { 0, current status } when not allowed, false when the batch is missing.
 */
const CHANGE_STATUS = `${HELPERS}
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return false end
if not allowed(current, ARGV[1]) then return { 0, current } end
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'errors', ARGV[5]) end
move_to(ARGV[1], tonumber(ARGV[2]), { KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[8] }, { KEYS[6], KEYS[7], ARGV[4] }, KEYS[3], ARGV[3],
  { KEYS[9], KEYS[10], KEYS[11] })
return { 1, ARGV[1] }
`;

/**
 * Reopens the failed items of a completed or running batch for a retry.
 * KEYS: 1 batch, 2 results, 3 history, 4 items, 5 custom-ids, 6 deadlines, 7 finished
 * ARGV: 1 now ms, 2 events channel, 3 active-set prefix
 * Returns the reopened indices.
 */
const REOPEN_FAILED = `${HELPERS}
local b = redis.call('HMGET', KEYS[1], 'status', 'owner', 'id', 'window_ms')
local status = b[1]
if not status then return {} end
if not LIFECYCLE.retryable[status] then return {} end
local all = redis.call('HGETALL', KEYS[2])
local reopened = {}
for i = 1, #all, 2 do
  local r = cjson.decode(all[i + 1])
  if r.status == 'failed' then
    redis.call('HDEL', KEYS[2], all[i])
    table.insert(reopened, tonumber(all[i]))
  end
end
if #reopened == 0 then return {} end
local now = tonumber(ARGV[1])
local window = tonumber(b[4]) or 86400000
redis.call('HINCRBY', KEYS[1], 'failed', -#reopened)
redis.call('HSET', KEYS[1], 'expires_at', now + window)
redis.call('HDEL', KEYS[1], 'finalizing_at', 'completed_at', 'expired_at')
for _, k in ipairs({ KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[7] }) do redis.call('PERSIST', k) end
redis.call('SADD', ARGV[3] .. b[2], b[3])
redis.call('ZADD', KEYS[6], now + window, b[3])
if status == 'completed' then
  redis.call('HSET', KEYS[1], 'status', 'in_progress', 'in_progress_at', now)
end
emit(KEYS[3], ARGV[2], { type = 'status', batchId = b[3], status = 'in_progress', counts = read_counts(), at = now })
return reopened
`;

/**
 * Sliding-log rate limit: KEYS[1] is a sorted set of the subject's accepted request times (ms, Redis's clock, so
 * replicas agree). ARGV: limit, window ms. Returns { allowed 0/1, requests in the window, ms until the oldest leaves
 * the window (0 when allowed) }. At most `limit` requests in ANY window of that length, not per calendar minute, and a
 * refused request is not counted (a client that keeps knocking does not push its own retry time further out).
 */
const RATE_LIMIT = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < limit then
  -- Members must be unique: entries of this same ms were added with smaller counts and are still in the set.
  redis.call('ZADD', KEYS[1], now, now .. '-' .. count)
  redis.call('PEXPIRE', KEYS[1], window)
  return { 1, count + 1, 0 }
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return { 0, count, math.max(tonumber(oldest[2]) + window - now, 1) }
`;

/** Deletes the key only while it still holds the given value. KEYS: 1 key. ARGV: 1 value. */
const DELETE_IF_EQUAL = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;

/**
 * Claims the webhook events due now: each is pushed `lease` ms into the future, so no other api replica sends it
 * while this one does (an api that dies mid-delivery leaves it to be sent again when the lease ends).
 * KEYS: 1 events, 2 due. ARGV: 1 now ms, 2 lease ms, 3 limit. Returns the events' json.
 */
const CLAIM_WEBHOOKS = `
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local claimed = {}
for _, id in ipairs(ids) do
  local json = redis.call('HGET', KEYS[1], id)
  if json then
    redis.call('ZADD', KEYS[2], tonumber(ARGV[1]) + tonumber(ARGV[2]), id)
    table.insert(claimed, json)
  else
    redis.call('ZREM', KEYS[2], id)
  end
end
return claimed
`;

/**
 * Publishes an uploaded file: its staged chunks (all of them, or nothing is published) become the file's content, and
 * its metadata and index entries appear in the same step. KEYS: staged chunks, chunks, file hash, all files, owner's
 * files. ARGV: chunk count, retention seconds (0 = none), then the hash's field/value pairs. Returns 0 when the staged
 * chunks are not all there (expired, or discarded).
 */
const PUBLISH_FILE = `
local chunks = tonumber(ARGV[1])
local retention = tonumber(ARGV[2])
if chunks > 0 then
  if redis.call('LLEN', KEYS[1]) ~= chunks then return 0 end
  redis.call('RENAME', KEYS[1], KEYS[2])
  if retention > 0 then redis.call('EXPIRE', KEYS[2], retention) else redis.call('PERSIST', KEYS[2]) end
end
local fields = {}
local id, created_at
for i = 3, #ARGV, 2 do
  table.insert(fields, ARGV[i])
  table.insert(fields, ARGV[i + 1])
  if ARGV[i] == 'id' then id = ARGV[i + 1] end
  if ARGV[i] == 'created_at' then created_at = ARGV[i + 1] end
end
redis.call('HSET', KEYS[3], unpack(fields))
if retention > 0 then redis.call('EXPIRE', KEYS[3], retention) end
redis.call('ZADD', KEYS[4], created_at, id)
redis.call('ZADD', KEYS[5], created_at, id)
return 1
`;

/**
 * PUBLISH routed by its channel (KEYS[1], never written). A plain PUBLISH has no key, so a Redis Cluster client sends
 * each one to any node, and two messages sent in order can reach the subscriber out of order (a stream's `done`
 * before its last delta). Through this script every message of a channel goes out from the node that owns the slot.
 */
const PUBLISH_IN_ORDER = `return redis.call('PUBLISH', KEYS[1], ARGV[1])`;

const SCRIPTS = {
  falconqCreateBatch: { numberOfKeys: 11, lua: CREATE_BATCH },
  falconqRecordResult: { numberOfKeys: 12, lua: RECORD_RESULT },
  falconqChangeStatus: { numberOfKeys: 11, lua: CHANGE_STATUS },
  falconqReopenFailed: { numberOfKeys: 7, lua: REOPEN_FAILED },
  falconqClaimWebhooks: { numberOfKeys: 2, lua: CLAIM_WEBHOOKS },
  falconqRateLimit: { numberOfKeys: 1, lua: RATE_LIMIT },
  falconqDeleteIfEqual: { numberOfKeys: 1, lua: DELETE_IF_EQUAL },
  falconqPublishFile: { numberOfKeys: 5, lua: PUBLISH_FILE },
  falconqPublishInOrder: { numberOfKeys: 1, lua: PUBLISH_IN_ORDER },
} as const;

type ScriptArg = string | number;
/** The store's scripts as commands of a connection. */
export type StoreCommands = { [name in keyof typeof SCRIPTS]: (...args: ScriptArg[]) => Promise<unknown> };

const defined = new WeakSet<RedisClient>();

/** The connection with the store's scripts defined on it (once per connection, whichever class asks first). */
export function withStoreCommands(redis: RedisClient): StoreCommands {
  if (!defined.has(redis)) {
    for (const [name, script] of Object.entries(SCRIPTS)) redis.defineCommand(name, script);
    defined.add(redis);
  }
  return redis as unknown as StoreCommands;
}
