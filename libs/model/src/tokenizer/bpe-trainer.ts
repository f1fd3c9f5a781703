// Byte-level BPE training (GPT-2 style) for the tiny model's tokenizer. Deterministic: ties go to the smaller pair.
import { bytesToUnicode, falconPreTokenize } from './falcon-pre-tokenizer';

export interface TrainedBpe {
  /** Byte-mapped base symbols (256) followed by merged tokens, in id order (before special tokens are placed). */
  tokens: string[];
  merges: [string, string][];
}

export function trainByteLevelBpe(corpus: string, mergeCount: number): TrainedBpe {
  const wordCounts = new Map<string, number>();
  for (const piece of falconPreTokenize(corpus)) wordCounts.set(piece, (wordCounts.get(piece) ?? 0) + 1);
  const words = [...wordCounts.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1)).map(([word, count]) => ({ symbols: [...word], count }));
  const byteMap = bytesToUnicode();
  const tokens = Array.from({ length: 256 }, (_, b) => byteMap[b]);
  const merges: [string, string][] = [];
  for (let m = 0; m < mergeCount; m++) {
    const pairCounts = new Map<string, number>();
    for (const word of words) {
      for (let i = 0; i + 1 < word.symbols.length; i++) {
        const key = `${word.symbols[i]}\u0000${word.symbols[i + 1]}`;
        pairCounts.set(key, (pairCounts.get(key) ?? 0) + word.count);
      }
    }
    let best = '';
    let bestCount = 0;
    for (const [key, count] of pairCounts) {
      if (count > bestCount || (count === bestCount && key < best)) {
        best = key;
        bestCount = count;
      }
    }
    if (bestCount === 0) break;
    const [left, right] = best.split('\u0000') as [string, string];
    const merged = left + right;
    merges.push([left, right]);
    tokens.push(merged);
    for (const word of words) {
      const next: string[] = [];
      for (let i = 0; i < word.symbols.length; i++) {
        if (i + 1 < word.symbols.length && word.symbols[i] === left && word.symbols[i + 1] === right) {
          next.push(merged);
          i++;
        } else next.push(word.symbols[i]);
      }
      word.symbols = next;
    }
  }
  return { tokens, merges };
}
