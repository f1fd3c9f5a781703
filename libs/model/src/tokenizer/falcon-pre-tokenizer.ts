// Falcon's pre-tokenizer in plain TypeScript (Rust `tokenizers` semantics), used to train the tiny BPE:
// Punctuation(contiguous) -> ByteLevel(GPT-2 regex, no prefix space) -> Digits(contiguous, Unicode) -> [0-9]{3} isolated.

const PUNCTUATION = /[\p{P}\u0021-\u002F\u003A-\u0040\u005B-\u0060\u007B-\u007E]+|[^\p{P}\u0021-\u002F\u003A-\u0040\u005B-\u0060\u007B-\u007E]+/gu;
const GPT2_PATTERN = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;
const DIGITS = /\p{N}+|[^\p{N}]+/gu;
const THREE_DIGITS = /[0-9][0-9][0-9]|(?:(?![0-9][0-9][0-9])[\s\S])+/g;

let cachedByteMap: string[] | undefined;

/** GPT-2 bytes_to_unicode: printable bytes map to themselves, the rest to 256+n. */
export function bytesToUnicode(): string[] {
  if (cachedByteMap) return cachedByteMap;
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const map: string[] = new Array(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) map[b] = printable.includes(b) ? String.fromCharCode(b) : String.fromCharCode(256 + extra++);
  cachedByteMap = map;
  return map;
}

export function byteLevelEncode(text: string): string {
  const map = bytesToUnicode();
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) out += map[byte];
  return out;
}

export function falconPreTokenize(text: string): string[] {
  return (text.match(PUNCTUATION) ?? [])
    .flatMap((piece) => piece.match(GPT2_PATTERN) ?? [])
    .map(byteLevelEncode)
    .flatMap((piece) => piece.match(DIGITS) ?? [])
    .flatMap((piece) => piece.match(THREE_DIGITS) ?? []);
}
