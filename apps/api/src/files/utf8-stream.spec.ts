// The streaming UTF-8 check gives the answer a fatal TextDecoder gives for the whole, however the bytes are split.
import { Utf8StreamCheck } from './utf8-stream';

const strict = new TextDecoder('utf-8', { fatal: true });
function wholeIsUtf8(bytes: Buffer): boolean {
  try {
    strict.decode(bytes);
    return true;
  } catch {
    return false;
  }
}

function checkInPieces(bytes: Buffer, cuts: number[]): boolean {
  const check = new Utf8StreamCheck();
  let from = 0;
  for (const cut of [...cuts, bytes.length]) {
    if (!check.push(bytes.subarray(from, cut))) return false;
    from = cut;
  }
  return check.end();
}

const valid = Buffer.from('a é € 😀 \uFFFD\uFEFF \u0800 \uFFFF \u{10FFFF} end', 'utf8');
const samples: [string, Buffer][] = [
  ['valid text with 2-, 3- and 4-byte sequences', valid],
  ['empty', Buffer.alloc(0)],
  ['an invalid byte (FF)', Buffer.concat([valid, Buffer.from([0xff]), valid])],
  ['C3 28 (a lead byte without its continuation)', Buffer.concat([valid, Buffer.from([0xc3, 0x28]), valid])],
  ['a lone continuation byte', Buffer.concat([valid, Buffer.from([0x80]), valid])],
  ['an overlong encoding of "/" (C0 AF)', Buffer.concat([valid, Buffer.from([0xc0, 0xaf])])],
  ['an overlong 3-byte sequence (E0 80 AF)', Buffer.concat([Buffer.from([0xe0, 0x80, 0xaf]), valid])],
  ['an encoded surrogate (ED A0 80)', Buffer.concat([valid, Buffer.from([0xed, 0xa0, 0x80]), valid])],
  ['a code point above U+10FFFF (F4 90 80 80)', Buffer.concat([valid, Buffer.from([0xf4, 0x90, 0x80, 0x80])])],
  ['cut off inside a 4-byte sequence at the end', Buffer.concat([valid, Buffer.from([0xf0, 0x9f, 0x98])])],
  ['cut off inside a 2-byte sequence at the end', Buffer.concat([valid, Buffer.from([0xc3])])],
  ['four continuation bytes at the end', Buffer.concat([valid, Buffer.from([0x80, 0x80, 0x80, 0x80])])],
];

describe('Utf8StreamCheck', () => {
  it.each(samples)('%s: same answer as a fatal TextDecoder, for every single cut and every pair of cuts', (_, bytes) => {
    const expected = wholeIsUtf8(bytes);
    expect(checkInPieces(bytes, [])).toBe(expected);
    for (let a = 0; a <= bytes.length; a++) {
      expect([a, checkInPieces(bytes, [a])]).toEqual([a, expected]);
      for (let b = a; b <= bytes.length; b++) expect([a, b, checkInPieces(bytes, [a, b])]).toEqual([a, b, expected]);
    }
  });

  it('checks one byte at a time', () => {
    for (const [, bytes] of samples) expect(checkInPieces(bytes, Array.from({ length: bytes.length }, (_, i) => i))).toBe(wholeIsUtf8(bytes));
  });
});
