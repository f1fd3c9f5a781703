// Stop criteria and incremental text: eos, stop strings (matched on decoded text, so they may span token
// boundaries), and the token budget.

import type { FinishReason, GenerationParams } from './api';

/** The part of a tokenizer the engine needs to turn ids into text. */
export interface TextDecoder {
  decode(ids: number[]): string;
}

/**
 * Turns a growing id sequence into text without re-decoding everything each step (the prefix/read offsets scheme
 * of text-generation-inference): a token's text is released once it no longer ends in an incomplete UTF-8
 * character.
 */
export class IncrementalDetokenizer {
  private readonly ids: number[] = [];
  private prefixOffset = 0;
  private readOffset = 0;
  private released = '';
  private static readonly MAX_HELD_TOKENS = 4;

  constructor(private readonly decoder: TextDecoder) {}

  get text(): string {
    return this.released;
  }

  /**
   * Adds one id; returns the text it completes ('' while a character is still incomplete). A UTF-8 character
   * spans at most 4 byte tokens: after that many, a trailing U+FFFD is a real invalid sequence and is released.
   */
  push(id: number): string {
    this.ids.push(id);
    const before = this.decodeRange(this.prefixOffset, this.readOffset);
    const after = this.decodeRange(this.prefixOffset, this.ids.length);
    const held = this.ids.length - this.readOffset;
    if (after.length <= before.length || (after.endsWith('\uFFFD') && held < IncrementalDetokenizer.MAX_HELD_TOKENS)) return '';
    const added = after.slice(before.length);
    this.prefixOffset = this.readOffset;
    this.readOffset = this.ids.length;
    this.released += added;
    return added;
  }

  /** Text still held back (an incomplete character at the very end), released as is. */
  flush(): string {
    const before = this.decodeRange(this.prefixOffset, this.readOffset);
    const after = this.decodeRange(this.prefixOffset, this.ids.length);
    const rest = after.length > before.length ? after.slice(before.length) : '';
    this.prefixOffset = this.readOffset = this.ids.length;
    this.released += rest;
    return rest;
  }

  private decodeRange(from: number, to: number): string {
    return to > from ? this.decoder.decode(this.ids.slice(from, to)) : '';
  }
}

export class StopStringMatcher {
  private readonly longest: number;

  constructor(private readonly stops: readonly string[]) {
    this.longest = stops.reduce((max, stop) => Math.max(max, stop.length), 0);
  }

  /** Earliest index where a stop string occurs in `text`, looking only where text added since `checkedLength` can reach. */
  find(text: string, checkedLength: number): number {
    if (this.stops.length === 0) return -1;
    const from = Math.max(0, checkedLength - this.longest + 1);
    let earliest = -1;
    for (const stop of this.stops) {
      const at = text.indexOf(stop, from);
      if (at >= 0 && (earliest < 0 || at < earliest)) earliest = at;
    }
    return earliest;
  }

  /** Length of the longest tail of `text` that is a proper prefix of some stop string (must not be streamed yet). */
  pendingTail(text: string): number {
    let pending = 0;
    for (const stop of this.stops) {
      for (let length = Math.min(stop.length - 1, text.length); length > pending; length--) {
        if (text.endsWith(stop.slice(0, length))) {
          pending = length;
          break;
        }
      }
    }
    return pending;
  }
}

export interface TokenOutcome {
  /** Text to stream for this token (can be '' while held back). */
  text: string;
  finishReason?: FinishReason;
}

/** Decides, token by token, what text a sequence has produced and whether it is finished. */
export class SequenceStopper {
  private readonly detokenizer: IncrementalDetokenizer;
  private readonly matcher: StopStringMatcher;
  private streamedLength = 0;
  private finalText: string | undefined;
  readonly tokens: number[] = [];
  finishReason: FinishReason | undefined;

  constructor(
    decoder: TextDecoder,
    private readonly params: Pick<GenerationParams, 'maxNewTokens' | 'stop' | 'ignoreEos'>,
    private readonly eosId: number,
  ) {
    this.detokenizer = new IncrementalDetokenizer(decoder);
    this.matcher = new StopStringMatcher(params.stop);
  }

  get text(): string {
    return this.finalText ?? this.detokenizer.text;
  }

  accept(id: number): TokenOutcome {
    if (this.finishReason) throw new Error('sequence already finished');
    this.tokens.push(id);
    if (id === this.eosId && !this.params.ignoreEos) return this.finish('eos');
    const checked = this.detokenizer.text.length;
    this.detokenizer.push(id);
    const stopAt = this.matcher.find(this.detokenizer.text, checked);
    if (stopAt >= 0) {
      this.finalText = this.detokenizer.text.slice(0, stopAt);
      return this.finish('stop');
    }
    if (this.tokens.length >= this.params.maxNewTokens) return this.finish('length');
    return { text: this.release(this.detokenizer.text.length - this.matcher.pendingTail(this.detokenizer.text)) };
  }

  /** Ends the sequence from outside (cancel, context full). */
  finish(reason: FinishReason): TokenOutcome {
    this.finishReason = reason;
    if (this.finalText === undefined) {
      this.detokenizer.flush();
      this.finalText = this.detokenizer.text;
    }
    return { text: this.release(this.finalText.length), finishReason: reason };
  }

  private release(upTo: number): string {
    const source = this.finalText ?? this.detokenizer.text;
    if (upTo <= this.streamedLength) return '';
    const piece = source.slice(this.streamedLength, upTo);
    this.streamedLength = upTo;
    return piece;
  }
}
