import * as fs from 'node:fs';
import * as path from 'node:path';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { type ChatMessage, renderFalconInstructPrompt, renderJinjaChatTemplate } from './chat-template';
import { applyRustCompatibility } from './rust-compat';
import { StreamingDecoder } from './streaming-decoder';

type Json = Record<string, unknown>;

export interface DecodeOptions {
  skipSpecialTokens?: boolean;
}

/** The model's tokenizer (tokenizer.json + tokenizer_config.json), with Rust-compatible pre-tokenization. */
export class Tokenizer {
  private readonly hf: HfTokenizer;
  private readonly idToToken: (string | undefined)[];
  readonly vocabSize: number;
  readonly eosId: number;
  readonly specialIds: ReadonlySet<number>;
  private readonly cleanUpSpaces: boolean;

  private constructor(private readonly json: Json, private readonly config: Json) {
    this.hf = new HfTokenizer(json as never, config as never);
    const patched = applyRustCompatibility((this.hf as unknown as { pre_tokenizer: unknown }).pre_tokenizer);
    const expected = countPreTokenizers(json.pre_tokenizer, ['Digits', 'Punctuation']);
    if (patched !== expected) {
      throw new Error(`tokenizer: patched ${patched} of ${expected} Digits/Punctuation pre-tokenizers; @huggingface/tokenizers internals changed (pinned 0.2.0)`);
    }
    const model = json.model as { vocab?: Record<string, number> };
    this.idToToken = [];
    for (const [token, id] of Object.entries(model.vocab ?? {})) this.idToToken[id] = token;
    const added = (json.added_tokens ?? []) as { id: number; content: string; special?: boolean }[];
    for (const token of added) this.idToToken[token.id] = token.content;
    this.vocabSize = this.idToToken.length;
    this.specialIds = new Set(added.filter((t) => t.special).map((t) => t.id));
    const eosToken = tokenContent(config.eos_token) ?? '<|endoftext|>';
    const eosId = this.tokenToId(eosToken);
    if (eosId === undefined) throw new Error(`tokenizer: eos token ${eosToken} is not in the vocabulary`);
    this.eosId = eosId;
    this.cleanUpSpaces = config.clean_up_tokenization_spaces === true;
  }

  static fromJson(tokenizerJson: Json, tokenizerConfig: Json = {}): Tokenizer {
    return new Tokenizer(tokenizerJson, tokenizerConfig);
  }

  static fromModelDir(dir: string): Tokenizer {
    const tokenizerPath = path.join(dir, 'tokenizer.json');
    const configPath = path.join(dir, 'tokenizer_config.json');
    const read = (file: string): Json => {
      try {
        return JSON.parse(fs.readFileSync(file, 'utf8')) as Json;
      } catch (error) {
        throw new Error(`${file}: cannot read tokenizer (${(error as Error).message})`);
      }
    };
    return new Tokenizer(read(tokenizerPath), fs.existsSync(configPath) ? read(configPath) : {});
  }

  tokenToId(token: string): number | undefined {
    return this.hf.token_to_id(token);
  }

  /** Token ids of `text`; no special tokens are added (special token text in `text` maps to its id). */
  encode(text: string): number[] {
    if (text.length === 0) return [];
    return this.hf.encode(text, { add_special_tokens: false }).ids;
  }

  /** Ids outside the tokenizer's vocabulary (a padded model vocab) decode to nothing. */
  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    const known = ids.filter((id) => Number.isInteger(id) && id >= 0 && this.idToToken[id] !== undefined && !(options.skipSpecialTokens && this.specialIds.has(id)));
    if (known.length === 0) return '';
    return this.hf.decode(known, { skip_special_tokens: options.skipSpecialTokens ?? false, clean_up_tokenization_spaces: this.cleanUpSpaces });
  }

  streamingDecoder(options: DecodeOptions = {}): StreamingDecoder {
    const raw = (ids: number[]) => {
      const known = ids.filter((id) => this.idToToken[id] !== undefined && !(options.skipSpecialTokens && this.specialIds.has(id)));
      return known.length === 0 ? '' : this.hf.decode(known, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
    };
    return new StreamingDecoder(raw);
  }

  get chatTemplate(): string | undefined {
    const template = this.config.chat_template;
    return typeof template === 'string' ? template : undefined;
  }

  /** The prompt for a conversation: the tokenizer's chat template if it has one, else Falcon-instruct's form. */
  applyChatTemplate(messages: ChatMessage[]): string {
    const template = this.chatTemplate;
    if (!template) return renderFalconInstructPrompt(messages);
    return renderJinjaChatTemplate(template, messages, {
      bos_token: tokenContent(this.config.bos_token),
      eos_token: tokenContent(this.config.eos_token),
    });
  }
}

function countPreTokenizers(config: unknown, types: string[]): number {
  if (!config || typeof config !== 'object') return 0;
  const node = config as { type?: string; pretokenizers?: unknown[] };
  const own = types.includes(node.type ?? '') ? 1 : 0;
  return own + (node.pretokenizers ?? []).reduce<number>((sum, child) => sum + countPreTokenizers(child, types), 0);
}

function tokenContent(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object' && typeof (value as { content?: unknown }).content === 'string') return (value as { content: string }).content;
  return undefined;
}
