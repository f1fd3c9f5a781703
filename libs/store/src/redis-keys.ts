// Every Redis key of the store in one place. The prefix may carry a Redis Cluster hash tag (`{falconq}`) so all keys
// (and the Lua scripts that touch several of them) live in one slot.

export class StoreKeys {
  constructor(readonly prefix: string) {}

  batch(id: string): string { return `${this.prefix}:batch:${id}`; }
  results(id: string): string { return `${this.prefix}:batch:${id}:results`; }
  items(id: string): string { return `${this.prefix}:batch:${id}:items`; }
  customIds(id: string): string { return `${this.prefix}:batch:${id}:custom-ids`; }
  history(id: string): string { return `${this.prefix}:batch:${id}:history`; }
  /** Every item event of a batch in the order the items finished (event streams resume from a position in it). */
  finished(id: string): string { return `${this.prefix}:batch:${id}:finished`; }
  eventsChannel(id: string): string { return `${this.prefix}:events:${id}`; }
  streamChannel(requestId: string): string { return `${this.prefix}:stream:${requestId}`; }
  /** Prefix of the per-owner set of active batch ids (the Lua scripts append the owner). */
  activePrefix(): string { return `${this.prefix}:active:`; }
  active(owner: string): string { return `${this.activePrefix()}${owner}`; }
  allBatches(): string { return `${this.prefix}:batches`; }
  ownerBatches(owner: string): string { return `${this.prefix}:batches:owner:${owner}`; }
  deadlines(): string { return `${this.prefix}:deadlines`; }
  /** Batches still being created (validating), by creation time: finds creations an api crash interrupted. */
  creating(): string { return `${this.prefix}:validating`; }
  /** Item inputs written before the batch exists; creation renames them into place in its atomic step. */
  stagedItems(id: string): string { return `${this.prefix}:staging:${id}:items`; }
  stagedCustomIds(id: string): string { return `${this.prefix}:staging:${id}:custom-ids`; }
  /** A file's metadata hash; its content is the list of chunks beside it (both under the prefix's hash tag). */
  file(id: string): string { return `${this.prefix}:file:${id}`; }
  fileChunks(id: string): string { return `${this.prefix}:file:${id}:chunks`; }
  /** The chunks of an upload still arriving (with a TTL); renamed to fileChunks(id) when the upload is published. */
  fileUpload(id: string): string { return `${this.prefix}:file:${id}:upload`; }
  allFiles(): string { return `${this.prefix}:files`; }
  ownerFiles(owner: string): string { return `${this.prefix}:files:owner:${owner}`; }
  idempotency(owner: string, keyHash: string): string { return `${this.prefix}:idempotency:${owner}:${keyHash}`; }
  workers(): string { return `${this.prefix}:workers`; }
  stats(): string { return `${this.prefix}:stats`; }
  rateLimit(subject: string): string { return `${this.prefix}:rate:${subject}`; }
  /** Present while an api is configured to send webhooks: final status changes then write to the outbox. */
  webhooksEnabled(): string { return `${this.prefix}:webhooks:enabled`; }
  /** Webhook outbox: event id -> event json, and the ids by when they are next due (ms). */
  webhookEvents(): string { return `${this.prefix}:webhooks:events`; }
  webhookDue(): string { return `${this.prefix}:webhooks:due`; }
  /** Events given up on after the last attempt (event id -> json with the last error). */
  webhookDead(): string { return `${this.prefix}:webhooks:dead`; }

  /** The per-batch keys that share its retention TTL. */
  batchKeys(id: string): string[] {
    return [this.batch(id), this.results(id), this.items(id), this.customIds(id), this.history(id), this.finished(id)];
  }
}
