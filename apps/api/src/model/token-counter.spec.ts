import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer } from '@app/engine';
import { tinyModelDir } from '../../../../test/support/tiny-model';
import { TokenCounter, countsByWord } from './token-counter';

// The tiny model's tokenizer has Falcon's pipeline (no normalizer; Punctuation, ByteLevel, Digits, Split [0-9]{3};
// BPE; Falcon's added tokens), so word-by-word counting is checked against the tokenizer itself on it.

const FRAGMENTS = [
  'the', 'quick', 'Brown', "it's", "we'll", 'naïve', 'café', 'e\u0301', '東京', 'مرحبا', '👩‍👩‍👧', '🇺🇳', '12', '12345', '٣٤', '½',
  '...', ',', '!?', '—', '(x)', '"q"', '$5.00', '>>QUESTION<<', '<|endoftext|>', '>>ANSWER<<', 'a>>TITLE<<b',
  ' ', '  ', '   ', '\t', '\n', '\n\n', ' \n', '\u00a0', '\u3000', '\r\n',
];

function randomText(random: () => number): string {
  const parts: string[] = [];
  const length = 1 + Math.floor(random() * 30);
  for (let i = 0; i < length; i++) parts.push(FRAGMENTS[Math.floor(random() * FRAGMENTS.length)]);
  return parts.join(random() < 0.5 ? '' : ' ');
}

function lcg(seed: number): () => number {
  let state = seed >>> 0;
  return () => ((state = (Math.imul(state, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

describe('TokenCounter', () => {
  let tokenizer: Tokenizer;
  let json: Record<string, unknown>;

  beforeAll(async () => {
    const dir = await tinyModelDir();
    tokenizer = Tokenizer.fromModelDir(dir);
    json = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')) as Record<string, unknown>;
  });

  it('counts exactly what the tokenizer encodes, word by word, on 5,000 mixed texts', () => {
    expect(countsByWord(json)).toBe(true);
    const counter = new TokenCounter((text) => tokenizer.encode(text), true);
    const random = lcg(42);
    const texts = ['', ' ', 'a', ' a', 'a ', 'a  b', '  leading', 'trailing  ', 'x\n y', 'Question: 2+2?\nAnswer:'];
    for (let i = 0; i < 5000; i++) texts.push(randomText(random));
    // Twice: the second pass is served from the cache.
    for (const pass of [1, 2]) {
      const wrong = texts.filter((text) => counter.count(text) !== tokenizer.encode(text).length);
      expect({ pass, wrong }).toEqual({ pass, wrong: [] });
    }
  });

  it('counts by word only for tokenizers where that is exact', () => {
    const pre = json.pre_tokenizer as { pretokenizers: Record<string, unknown>[] };
    const withPre = (pretokenizers: Record<string, unknown>[]) => ({ ...json, pre_tokenizer: { type: 'Sequence', pretokenizers } });
    expect(countsByWord({ ...json, normalizer: { type: 'NFC' } })).toBe(false);
    expect(countsByWord(withPre([{ type: 'ByteLevel', add_prefix_space: true, use_regex: true }]))).toBe(false);
    expect(countsByWord(withPre([{ type: 'ByteLevel', add_prefix_space: false, use_regex: false }]))).toBe(false);
    expect(countsByWord(withPre([...pre.pretokenizers, { type: 'Split', pattern: { Regex: ' ?\\w+' }, behavior: 'Isolated' }]))).toBe(false);
    expect(countsByWord(withPre([{ type: 'Metaspace' }]))).toBe(false);
    expect(countsByWord({ ...json, added_tokens: [{ content: 'two words', lstrip: false, rstrip: false }] })).toBe(false);
    expect(countsByWord({ ...json, added_tokens: [{ content: '<x>', lstrip: true, rstrip: false }] })).toBe(false);
    expect(countsByWord({ ...json, model: { ...(json.model as object), dropout: 0.1 } })).toBe(false);
  });
});
