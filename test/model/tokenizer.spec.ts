import { splitByCharacter, Tokenizer } from '@app/engine';
import { FALCON_PRE_TOKENIZER } from '@app/model';
import { tinyModelDir } from '../support/tiny-model';

describe('Tokenizer on the tiny model (byte-level BPE, Falcon specials and pre-tokenizer)', () => {
  let tokenizer: Tokenizer;
  beforeAll(async () => {
    tokenizer = Tokenizer.fromModelDir(await tinyModelDir());
  });

  it('exposes eos 11 and the vocabulary size', () => {
    expect(tokenizer.eosId).toBe(11);
    expect(tokenizer.vocabSize).toBe(384);
    expect(tokenizer.tokenToId('>>TITLE<<')).toBe(0);
  });

  it.each([
    'Hello, world! The capital of France is Paris.',
    'Ünïcödé: 日本語のテキスト, emoji 🎉🇫🇷, Arabic ١٢٣ and ²½',
    '  leading spaces, trailing spaces   ',
    'tabs\tand\nnew\r\nlines\n\n\n',
    'numbers 1234567 3.14159 $12.50 -42',
    'code: function f(a, b) { return a + b; }',
  ])('round-trips %j exactly', (text) => {
    const ids = tokenizer.encode(text);
    expect(ids.length).toBeGreaterThan(0);
    expect(ids.every((id) => id >= 0 && id < tokenizer.vocabSize)).toBe(true);
    expect(tokenizer.decode(ids)).toBe(text);
  });

  it('adds no special tokens, maps special token text to its id, and can skip specials on decode', () => {
    const ids = tokenizer.encode('>>QUESTION<<What?<|endoftext|>');
    expect(ids[0]).toBe(6);
    expect(ids[ids.length - 1]).toBe(11);
    expect(ids.filter((id) => id < 12)).toEqual([6, 11]);
    expect(tokenizer.decode(ids)).toBe('>>QUESTION<<What?<|endoftext|>');
    expect(tokenizer.decode(ids, { skipSpecialTokens: true })).toBe('What?');
  });

  it('splits three-digit groups and digits from letters like Falcon', () => {
    const ids = tokenizer.encode('1234567');
    const pieces = ids.map((id) => tokenizer.decode([id]));
    expect(pieces.join('')).toBe('1234567');
    // [0-9]{3} isolated: no token crosses the 123|456|7 boundaries.
    let position = 0;
    const boundaries = new Set<number>();
    for (const piece of pieces) boundaries.add((position += piece.length));
    expect(boundaries.has(3) && boundaries.has(6)).toBe(true);
  });

  it('encodes the empty string to no ids and decodes no ids (or only unknown ids) to the empty string', () => {
    expect(tokenizer.encode('')).toEqual([]);
    expect(tokenizer.decode([])).toBe('');
    expect(tokenizer.decode([60000, 65023])).toBe('');
  });

  it('streams text token by token, holding back incomplete UTF-8', () => {
    const text = 'Fête 🎉 日本 done';
    const ids = tokenizer.encode(text);
    const decoder = tokenizer.streamingDecoder();
    const chunks = ids.map((id) => decoder.push(id));
    chunks.push(decoder.flush());
    expect(chunks.join('')).toBe(text);
    expect(chunks.some((chunk) => chunk.includes('\uFFFD'))).toBe(false);
    // The emoji is 4 bytes: at least one token of it produced no text on its own.
    expect(chunks.filter((chunk) => chunk === '').length).toBeGreaterThan(0);
  });

  it('renders the Falcon-instruct prompt form without a chat template, and a Jinja chat template when given', () => {
    expect(tokenizer.applyChatTemplate([
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Hi' },
    ])).toBe('Be brief.\nUser: Hi\nAssistant:');
    const withTemplate = Tokenizer.fromJson(
      JSON.parse(JSON.stringify((tokenizer as unknown as { json: object }).json)) as Record<string, unknown>,
      { eos_token: '<|endoftext|>', chat_template: '{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}' },
    );
    expect(withTemplate.applyChatTemplate([{ role: 'user', content: 'Hi' }])).toBe('<user>Hi<assistant>');
  });
});

/** A byte-level BPE whose ids are the byte values (0..255), plus the merges given, in order, from id 256. */
function byteLevelTokenizer(preTokenizer: Record<string, unknown>, merges: [string, string][]): Tokenizer {
  const printable = [...range(0x21, 0x7e), ...range(0xa1, 0xac), ...range(0xae, 0xff)];
  const vocab: Record<string, number> = {};
  let extra = 0;
  for (let b = 0; b < 256; b++) vocab[String.fromCharCode(printable.includes(b) ? b : 256 + extra++)] = b;
  merges.forEach(([a, b], i) => (vocab[a + b] = 256 + i));
  vocab['<|endoftext|>'] = 256 + merges.length;
  return Tokenizer.fromJson({
    version: '1.0', truncation: null, padding: null,
    added_tokens: [{ id: 256 + merges.length, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
    normalizer: null, pre_tokenizer: preTokenizer,
    post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, vocab, merges: merges.map(([a, b]) => `${a} ${b}`) },
  }, { eos_token: '<|endoftext|>' });
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

const BYTE_LEVEL_NO_REGEX = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false };

// Expected ids are derived from the Rust `tokenizers` semantics: a merge can only apply inside one pre-token, so the
// merges below reveal where the pre-tokenizer split. Byte-level symbols here have id = byte value.
describe('Rust-compatible pre-tokenization (patches over @huggingface/tokenizers 0.2.0)', () => {
  it('Digits splits on Unicode numerics: Arabic-Indic digits group, apart from the letters around them', () => {
    // "a١٢٣b": ١ ٢ ٣ are U+0661..0663 = D9 A1, D9 A2, D9 A3; byte D9 maps to "Ù", A1 to "¡".
    const tokenizer = byteLevelTokenizer({ type: 'Sequence', pretokenizers: [{ type: 'Digits', individual_digits: false }, BYTE_LEVEL_NO_REGEX] }, [['a', 'Ù'], ['Ù', '¡']]);
    // Rust: "a" | "١٢٣" | "b" -> "a Ù" cannot merge (different pre-tokens), "Ù ¡" can (id 257).
    expect(tokenizer.encode('a١٢٣b')).toEqual([97, 257, 0xd9, 0xa2, 0xd9, 0xa3, 98]);
    const individual = byteLevelTokenizer({ type: 'Sequence', pretokenizers: [{ type: 'Digits', individual_digits: true }, BYTE_LEVEL_NO_REGEX] }, [['Ù', '¡'], ['¡', 'Ù']]);
    // Individual digits: "¡Ù" (across ١|٢) must not merge.
    expect(individual.encode('١٢')).toEqual([256, 0xd9, 0xa2]);
  });

  it('Digits after ByteLevel sees byte-mapped text: "½" (C2 BD -> "Â½") splits before the numeric "½" in Falcon\'s sequence', () => {
    const tokenizer = byteLevelTokenizer(FALCON_PRE_TOKENIZER, [['Â', '½']]);
    // Rust: ByteLevel gives "Â½"; Digits splits it into "Â" | "½" since U+00BD is numeric (No); no merge.
    expect(tokenizer.encode('½')).toEqual([0xc2, 0xbd]);
  });

  it('Punctuation honours behavior: Isolated splits every punctuation character, Contiguous groups runs', () => {
    const merges: [string, string][] = [['!', '!'], ['h', 'i']];
    const isolated = byteLevelTokenizer({ type: 'Sequence', pretokenizers: [{ type: 'Punctuation', behavior: 'Isolated' }, BYTE_LEVEL_NO_REGEX] }, merges);
    expect(isolated.encode('hi!!')).toEqual([257, 33, 33]);
    const contiguous = byteLevelTokenizer({ type: 'Sequence', pretokenizers: [{ type: 'Punctuation', behavior: 'Contiguous' }, BYTE_LEVEL_NO_REGEX] }, merges);
    expect(contiguous.encode('hi!!')).toEqual([257, 256]);
    // Rust's default behavior is Isolated.
    const defaulted = byteLevelTokenizer({ type: 'Sequence', pretokenizers: [{ type: 'Punctuation' }, BYTE_LEVEL_NO_REGEX] }, merges);
    expect(defaulted.encode('hi!!')).toEqual([257, 33, 33]);
  });

  it('implements every SplitDelimiterBehavior like Rust', () => {
    const isBang = (c: string) => c === '!';
    expect(splitByCharacter('a!!b!', isBang, 'Removed')).toEqual(['a', 'b']);
    expect(splitByCharacter('a!!b!', isBang, 'Isolated')).toEqual(['a', '!', '!', 'b', '!']);
    expect(splitByCharacter('a!!b!', isBang, 'Contiguous')).toEqual(['a', '!!', 'b', '!']);
    expect(splitByCharacter('a!!b!', isBang, 'MergedWithPrevious')).toEqual(['a!', '!', 'b!']);
    expect(splitByCharacter('a!!b!', isBang, 'MergedWithNext')).toEqual(['a', '!', '!b', '!']);
  });
});
