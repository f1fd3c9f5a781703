// Lua scripts: each state change of a batch is one atomic step, so several api replicas and workers can race safely.
// Events are built with cjson and published from inside the script, in the same step as the change they describe.

/** Shared helpers, prepended to the scripts that publish events. KEYS[1] is always the batch hash. */
const EVENT_HELPERS = `
local function counts_of(b)
  return { total = tonumber(b[1]) or 0, completed = tonumber(b[2]) or 0, failed = tonumber(b[3]) or 0 }
end
local function read_counts()
  return counts_of(redis.call('HMGET', KEYS[1], 'total', 'completed', 'failed'))
end
local function emit(history_key, channel, history_max, event)
  local json = cjson.encode(event)
  redis.call('RPUSH', history_key, json)
  redis.call('LTRIM', history_key, -history_max, -1)
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
-- A batch may carry its own retention (online requests keep theirs short); else the store's default.
local function set_retention(keys, default_seconds)
  local own = tonumber(redis.call('HGET', KEYS[1], 'retention_s'))
  local seconds = own or default_seconds
  if seconds > 0 then
    for _, k in ipairs(keys) do redis.call('EXPIRE', k, seconds) end
  end
end
`;

/**
 * recordResult.
 * KEYS: 1 batch, 2 results, 3 history, 4 items, 5 custom-ids, 6 deadlines, 7 stats, 8-10 webhooks enabled/events/due,
 *       11 finished (every item event, in order, untrimmed: what an event stream resumes from)
 * ARGV: 1 index, 2 result json, 3 item status, 4 now ms, 5 completion tokens, 6 custom id, 7 events channel,
 *       8 active-set prefix, 9 retention s, 10 progress interval ms, 11 history max, 12 prompt tokens
 * The cluster-wide stats count items by status (items_succeeded, items_failed, items_cancelled, items_expired).
 */
export const RECORD_RESULT = `${EVENT_HELPERS}
if redis.call('EXISTS', KEYS[1]) == 0 then return 'missing' end
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then return 'duplicate' end
local now = tonumber(ARGV[4])
local history_max = tonumber(ARGV[11])
if ARGV[3] == 'succeeded' then
  redis.call('HINCRBY', KEYS[1], 'completed', 1)
else
  redis.call('HINCRBY', KEYS[1], 'failed', 1)
end
redis.call('HINCRBY', KEYS[7], 'items_' .. ARGV[3], 1)
local prompt_tokens = tonumber(ARGV[12]) or 0
if prompt_tokens > 0 then redis.call('HINCRBY', KEYS[1], 'prompt_tokens', prompt_tokens) end
local tokens = tonumber(ARGV[5])
if tokens > 0 then
  redis.call('HINCRBY', KEYS[1], 'completion_tokens', tokens)
  redis.call('HINCRBY', KEYS[7], 'completion_tokens', tokens)
end
local b = redis.call('HMGET', KEYS[1], 'total', 'completed', 'failed', 'status', 'in_progress_at', 'completion_tokens',
  'progress_at', 'owner', 'id')
local counts = counts_of(b)
local status = b[4]
local batch_id = b[9]
redis.call('RPUSH', KEYS[11], emit(KEYS[3], ARGV[7], history_max,
  { type = 'item', batchId = batch_id, index = tonumber(ARGV[1]), customId = ARGV[6], status = ARGV[3], at = now }))
local own_ttl = redis.call('PTTL', KEYS[1])
if own_ttl > 0 then redis.call('PEXPIRE', KEYS[11], own_ttl) end
local done = counts.completed + counts.failed
if done >= counts.total then
  local final = nil
  if status == 'in_progress' or status == 'finalizing' or status == 'validating' then final = 'completed' end
  if status == 'cancelling' then final = 'cancelled' end
  if final then
    redis.call('HSET', KEYS[1], 'status', final)
    if final == 'completed' then
      redis.call('HSET', KEYS[1], 'finalizing_at', now, 'completed_at', now)
    else
      redis.call('HSET', KEYS[1], 'cancelled_at', now)
    end
    redis.call('SREM', ARGV[8] .. b[8], batch_id)
    redis.call('ZREM', KEYS[6], batch_id)
    emit(KEYS[3], ARGV[7], history_max, { type = 'status', batchId = batch_id, status = final, counts = counts, at = now })
    enqueue_webhook({ KEYS[8], KEYS[9], KEYS[10] }, batch_id, final, now)
    set_retention({ KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[11] }, tonumber(ARGV[9]))
  end
  return 'recorded'
end
local last = tonumber(b[7]) or 0
if now - last >= tonumber(ARGV[10]) then
  redis.call('HSET', KEYS[1], 'progress_at', now)
  local started = tonumber(b[5]) or now
  local elapsed = math.max(now - started, 1) / 1000
  local ips = done / elapsed
  local tps = (tonumber(b[6]) or 0) / elapsed
  local eta = cjson.null
  if ips > 0 then eta = (counts.total - done) / ips end
  emit(KEYS[3], ARGV[7], history_max, { type = 'progress', batchId = batch_id, counts = counts, itemsPerSecond = ips,
    tokensPerSecond = tps, etaSeconds = eta, at = now })
end
return 'recorded'
`;

/**
 * Status change of a batch (cancel, expire, fail, start).
 * KEYS: 1 batch, 2 results, 3 history, 4 items, 5 custom-ids, 6 deadlines, 7 validating, 8-10 webhooks enabled/events/due,
 *       11 finished
 * ARGV: 1 new status, 2 allowed current statuses (comma separated), 3 now ms, 4 timestamp field, 5 events channel,
 *       6 active-set prefix, 7 retention s (applied when the new status is final; 0 = keep), 8 history max,
 *       9 errors json ('' = none)
 * Returns { 1, new status } when changed, { 0, current status } when not allowed, false when the batch is missing.
 */
export const CHANGE_STATUS = `${EVENT_HELPERS}
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return false end
local allowed = false
for s in string.gmatch(ARGV[2], '[^,]+') do if s == current then allowed = true end end
if not allowed then return { 0, current } end
local now = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'status', ARGV[1], ARGV[4], now)
if current == 'validating' then redis.call('ZREM', KEYS[7], redis.call('HGET', KEYS[1], 'id')) end
if ARGV[9] ~= '' then redis.call('HSET', KEYS[1], 'errors', ARGV[9]) end
local final = ARGV[1] == 'completed' or ARGV[1] == 'failed' or ARGV[1] == 'expired' or ARGV[1] == 'cancelled'
if final then
  local b = redis.call('HMGET', KEYS[1], 'owner', 'id')
  redis.call('SREM', ARGV[6] .. b[1], b[2])
  redis.call('ZREM', KEYS[6], b[2])
  set_retention({ KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[11] }, tonumber(ARGV[7]))
  enqueue_webhook({ KEYS[8], KEYS[9], KEYS[10] }, redis.call('HGET', KEYS[1], 'id'), ARGV[1], now)
end
local id = redis.call('HGET', KEYS[1], 'id')
emit(KEYS[3], ARGV[5], tonumber(ARGV[8]), { type = 'status', batchId = id, status = ARGV[1], counts = read_counts(), at = now })
return { 1, ARGV[1] }
`;

/**
 * Reopen the failed items of a finished or running batch for a retry.
 * KEYS: 1 batch, 2 results, 3 history, 4 items, 5 custom-ids, 6 deadlines, 7 finished
 * ARGV: 1 now ms, 2 events channel, 3 active-set prefix, 4 history max
 * Returns the reopened indices.
 */
export const REOPEN_FAILED = `${EVENT_HELPERS}
local b = redis.call('HMGET', KEYS[1], 'status', 'owner', 'id', 'window_ms')
local status = b[1]
if not status then return {} end
if status ~= 'completed' and status ~= 'in_progress' and status ~= 'finalizing' then return {} end
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
redis.call('HINCRBY', KEYS[1], 'failed', -#reopened)
redis.call('HSET', KEYS[1], 'status', 'in_progress', 'expires_at', now + (tonumber(b[4]) or 86400000))
redis.call('HDEL', KEYS[1], 'finalizing_at', 'completed_at')
for _, k in ipairs({ KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[7] }) do redis.call('PERSIST', k) end
redis.call('SADD', ARGV[3] .. b[2], b[3])
redis.call('ZADD', KEYS[6], now + (tonumber(b[4]) or 86400000), b[3])
emit(KEYS[3], ARGV[2], tonumber(ARGV[4]), { type = 'status', batchId = b[3], status = 'in_progress', counts = read_counts(), at = now })
return reopened
`;

/**
 * Claims the webhook events due now: each is pushed `lease` ms into the future, so no other api replica sends it
 * while this one does (an api that dies mid-delivery leaves it to be sent again when the lease ends).
 * KEYS: 1 events, 2 due. ARGV: 1 now ms, 2 lease ms, 3 limit. Returns the events' json.
 */
export const CLAIM_WEBHOOKS = `
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
 * Sliding-log rate limit: KEYS[1] is a sorted set of the subject's accepted request times (ms, Redis's clock, so
 * replicas agree). ARGV: limit, window ms. Returns { allowed 0/1, requests in the window, ms until the oldest leaves
 * the window (0 when allowed) }. At most `limit` requests in ANY window of that length, not per calendar minute, and a
 * refused request is not counted (a client that keeps knocking does not push its own retry time further out).
 */
export const RATE_LIMIT = `
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
