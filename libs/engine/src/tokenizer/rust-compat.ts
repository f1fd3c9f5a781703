// @huggingface/tokenizers 0.2.0 differs from the Rust `tokenizers` library in two pre-tokenizers that Falcon uses:
//  - Digits matches ASCII `\d`; Rust splits on `char::is_numeric` (Unicode N: Nd, Nl, No).
//  - Punctuation always groups runs; Rust honours `behavior` (default Isolated).
// We patch those instances after loading so ids match Rust. This relies on 0.2.0 internals (pinned in package.json):
// pre-tokenizer instances keep their JSON in `config`, Sequence keeps its children in `tokenizers`, and each
// implements `pre_tokenize_text(text): string[]`.

const PUNCTUATION_CLASS = '\\p{P}\\u0021-\\u002F\\u003A-\\u0040\\u005B-\\u0060\\u007B-\\u007E';
const PUNCTUATION_CHAR = new RegExp(`[${PUNCTUATION_CLASS}]`, 'u');
const NUMERIC_CHAR = /\p{N}/u;

export type SplitBehavior = 'Removed' | 'Isolated' | 'MergedWithPrevious' | 'MergedWithNext' | 'Contiguous';

interface PatchablePreTokenizer {
  config?: { type?: string; behavior?: string; individual_digits?: boolean };
  tokenizers?: (PatchablePreTokenizer | null)[];
  pre_tokenize_text: (text: string, options?: unknown) => string[];
}

/** Splits `text` on characters matching `isDelimiter`, with the Rust `SplitDelimiterBehavior` semantics. */
export function splitByCharacter(text: string, isDelimiter: (char: string) => boolean, behavior: SplitBehavior): string[] {
  const pieces: string[] = [];
  let current = '';
  let currentIsDelimiter = false;
  const flush = () => {
    if (current) pieces.push(current);
    current = '';
  };
  for (const char of text) {
    const delimiter = isDelimiter(char);
    switch (behavior) {
      case 'Removed':
        if (delimiter) flush();
        else current += char;
        break;
      case 'Isolated':
        if (delimiter) {
          flush();
          pieces.push(char);
        } else current += char;
        break;
      case 'Contiguous':
        if (current && delimiter !== currentIsDelimiter) flush();
        current += char;
        currentIsDelimiter = delimiter;
        break;
      case 'MergedWithPrevious':
        current += char;
        if (delimiter) flush();
        break;
      case 'MergedWithNext':
        if (delimiter) flush();
        current += char;
        break;
    }
  }
  flush();
  return pieces;
}

function patchOne(preTokenizer: PatchablePreTokenizer): number {
  let patched = 0;
  for (const child of preTokenizer.tokenizers ?? []) if (child) patched += patchOne(child);
  const type = preTokenizer.config?.type;
  if (type === 'Digits') {
    const behavior: SplitBehavior = preTokenizer.config?.individual_digits ? 'Isolated' : 'Contiguous';
    preTokenizer.pre_tokenize_text = (text: string) => splitByCharacter(text, (c) => NUMERIC_CHAR.test(c), behavior);
    patched++;
  } else if (type === 'Punctuation') {
    const behavior = (preTokenizer.config?.behavior ?? 'Isolated') as SplitBehavior;
    preTokenizer.pre_tokenize_text = (text: string) => splitByCharacter(text, (c) => PUNCTUATION_CHAR.test(c), behavior);
    patched++;
  }
  return patched;
}

/** Applies the Rust-compatibility patches to a loaded tokenizer's pre-tokenizer tree; returns how many were patched. */
export function applyRustCompatibility(preTokenizer: unknown): number {
  if (!preTokenizer) return 0;
  return patchOne(preTokenizer as PatchablePreTokenizer);
}
