import { trainByteLevelBpe, type TrainedBpe } from './bpe-trainer';
import { TINY_CORPUS } from './corpus';

/** Falcon's special tokens at ids 0..11; <|endoftext|> (11) is eos, bos and pad. */
export const FALCON_SPECIAL_TOKENS = [
  '>>TITLE<<', '>>ABSTRACT<<', '>>INTRODUCTION<<', '>>SUMMARY<<', '>>COMMENT<<', '>>ANSWER<<',
  '>>QUESTION<<', '>>DOMAIN<<', '>>PREFIX<<', '>>SUFFIX<<', '>>MIDDLE<<', '<|endoftext|>',
] as const;
export const FALCON_EOS_ID = 11;

type Json = Record<string, unknown>;

export const FALCON_PRE_TOKENIZER: Json = {
  type: 'Sequence',
  pretokenizers: [
    { type: 'Punctuation', behavior: 'Contiguous' },
    { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    { type: 'Digits', individual_digits: false },
    { type: 'Split', pattern: { Regex: '[0-9][0-9][0-9]' }, behavior: 'Isolated', invert: false },
  ],
};

/** tokenizer.json for a byte-level BPE with Falcon's specials, pre-tokenizer, decoder and post-processor. */
export function falconTokenizerJson(bpe: TrainedBpe): Json {
  const vocab: Record<string, number> = {};
  FALCON_SPECIAL_TOKENS.forEach((token, id) => (vocab[token] = id));
  bpe.tokens.forEach((token, i) => (vocab[token] = FALCON_SPECIAL_TOKENS.length + i));
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: FALCON_SPECIAL_TOKENS.map((content, id) => ({
      id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
    })),
    normalizer: null,
    pre_tokenizer: FALCON_PRE_TOKENIZER,
    post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab,
      merges: bpe.merges.map(([a, b]) => `${a} ${b}`),
    },
  };
}

export function falconTokenizerConfigJson(modelMaxLength = 2048): Json {
  return {
    add_prefix_space: false,
    bos_token: '<|endoftext|>',
    eos_token: '<|endoftext|>',
    additional_special_tokens: FALCON_SPECIAL_TOKENS.slice(0, 11),
    clean_up_tokenization_spaces: false,
    model_max_length: modelMaxLength,
    tokenizer_class: 'PreTrainedTokenizerFast',
  };
}

/** The tiny tokenizer: 12 specials + 256 bytes + merges learned from the embedded corpus, `vocabSize` in all. */
export function trainTinyTokenizer(vocabSize: number): Json {
  const merges = vocabSize - FALCON_SPECIAL_TOKENS.length - 256;
  if (merges < 0) throw new Error(`vocab size ${vocabSize} is below ${FALCON_SPECIAL_TOKENS.length + 256}`);
  const bpe = trainByteLevelBpe(TINY_CORPUS, merges);
  if (bpe.merges.length !== merges) throw new Error(`the tiny corpus yields only ${bpe.merges.length} merges, ${merges} requested`);
  return falconTokenizerJson(bpe);
}
