import { isUtf8 } from 'node:buffer';

/** Bytes of the UTF-8 sequence a lead byte starts (1 for ASCII and for bytes that cannot start one). */
function sequenceLength(lead: number): number {
  if (lead >= 0xf0) return 4;
  if (lead >= 0xe0) return 3;
  if (lead >= 0xc0) return 2;
  return 1;
}

/**
 * Strict UTF-8 checking of bytes that arrive in pieces (the same rule as a fatal TextDecoder: no invalid, overlong or
 * surrogate sequences, nothing cut off at the end), without decoding them: no string is made, so checking a large
 * upload costs no memory. A sequence split between two pieces is checked once both halves are in.
 */
export class Utf8StreamCheck {
  /** The start of a sequence the last piece ended in (at most 3 bytes). */
  private carry: Buffer = Buffer.alloc(0);

  /** Checks the next piece; false at the first byte sequence that is not UTF-8. */
  push(piece: Buffer): boolean {
    let start = 0;
    if (this.carry.length > 0) {
      const missing = sequenceLength(this.carry[0]) - this.carry.length;
      if (piece.length < missing) {
        this.carry = Buffer.concat([this.carry, piece]);
        return true;
      }
      if (!isUtf8(Buffer.concat([this.carry, piece.subarray(0, missing)]))) return false;
      start = missing;
      this.carry = Buffer.alloc(0);
    }
    // An incomplete sequence at the end waits for the next piece.
    let end = piece.length;
    for (let i = piece.length - 1; i >= Math.max(start, piece.length - 3); i--) {
      const byte = piece[i];
      if ((byte & 0xc0) === 0x80) continue;
      if (byte >= 0xc0 && piece.length - i < sequenceLength(byte)) end = i;
      break;
    }
    if (!isUtf8(piece.subarray(start, end))) return false;
    if (end < piece.length) this.carry = Buffer.from(piece.subarray(end));
    return true;
  }

  /** After the last piece: false if the bytes ended inside a sequence. */
  end(): boolean {
    return this.carry.length === 0;
  }
}
