// Counting a prompt's tokens fast, exactly. A byte-level BPE tokenizer (Falcon's) pre-tokenizes text into pieces that
// never cross the boundary before a space that follows a non-space character (a space starts the next word), and
// BPE merges only within a piece. So the token count of a text is the sum of the counts of its words, each word
// with its leading space: " the", " quick", ... Those repeat across the lines of a batch, so a cache of word counts
// turns tokenizing a 10,000-line file into mostly map lookups. The tokenizer's own encode is the reference: it counts
// every word not in the cache, and every text when the tokenizer is not of the kind this rule holds for.

type Json = Record<string, unknown>;

/** Pre-tokenizers that split only within a word as defined above (for Split: a pattern of digits only). */
function isWordLocal(pre: Json | null | undefined): boolean {
  if (!pre) return false;
  switch (pre.type) {
    case 'Sequence':
      return Array.isArray(pre.pretokenizers) && (pre.pretokenizers as Json[]).every(isWordLocal);
    case 'ByteLevel':
      return pre.add_prefix_space === false && pre.use_regex !== false;
    case 'Punctuation':
    case 'Digits':
      return true;
    case 'Split': {
      const pattern = (pre.pattern as { Regex?: string } | undefined)?.Regex;
      return typeof pattern === 'string' && /^(\[0-9\]|\\d)+(\{\d+(,\d*)?\})?$/.test(pattern);
    }
    default:
      return false;
  }
}

/**
 * Whether word-by-word counting gives exactly the tokenizer's count for this tokenizer.json: no normalizer, BPE
 * without dropout, word-local pre-tokenizers, and added tokens that hold no space and strip nothing around them.
 */
export function countsByWord(tokenizerJson: Json): boolean {
  const model = tokenizerJson.model as Json | undefined;
  const added = (tokenizerJson.added_tokens ?? []) as { content: string; lstrip?: boolean; rstrip?: boolean }[];
  return (
    (tokenizerJson.normalizer === null || tokenizerJson.normalizer === undefined) &&
    model?.type === 'BPE' && (model.dropout === null || model.dropout === undefined) &&
    isWordLocal(tokenizerJson.pre_tokenizer as Json | null) &&
    added.every((token) => !/\s/.test(token.content) && !token.lstrip && !token.rstrip)
  );
}

const SPACE = 32;
const WHITESPACE = /\s/;
const MAX_CACHED_WORDS = 200_000;

/** Token counts of texts, by word with a cache, or by the tokenizer's encode when `byWord` is false. */
export class TokenCounter {
  private readonly words = new Map<string, number>();

  constructor(private readonly encode: (text: string) => number[], private readonly byWord: boolean) {}

  count(text: string): number {
    if (!this.byWord) return this.encode(text).length;
    let total = 0;
    let start = 0;
    for (let i = 1; i < text.length; i++) {
      if (text.charCodeAt(i) === SPACE && !WHITESPACE.test(text[i - 1])) {
        total += this.countWord(text.slice(start, i));
        start = i;
      }
    }
    return total + (text.length > 0 ? this.countWord(text.slice(start)) : 0);
  }

  private countWord(word: string): number {
    let count = this.words.get(word);
    if (count === undefined) {
      count = this.encode(word).length;
      // A bounded cache: when full, start over (the words of the batch at hand come back at once).
      if (this.words.size >= MAX_CACHED_WORDS) this.words.clear();
      this.words.set(word, count);
    }
    return count;
  }
}
