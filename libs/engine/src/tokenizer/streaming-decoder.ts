/** Incremental detokenization: push ids one by one, get the new text, holding back incomplete UTF-8 sequences. */
export class StreamingDecoder {
  private readonly ids: number[] = [];
  private prefixOffset = 0;
  private readOffset = 0;

  /** A token that ends mid-character decodes to U+FFFD; wait for at most this many more tokens. */
  private static readonly MAX_HELD_TOKENS = 4;

  constructor(private readonly decode: (ids: number[]) => string) {}

  push(id: number): string {
    this.ids.push(id);
    const text = this.decode(this.ids.slice(this.prefixOffset));
    const held = this.ids.length - this.readOffset;
    if (text.endsWith('\uFFFD') && held < StreamingDecoder.MAX_HELD_TOKENS) return '';
    return this.emit(text);
  }

  /** Everything not yet returned (incomplete characters come out as U+FFFD). */
  flush(): string {
    if (this.readOffset === this.ids.length) return '';
    return this.emit(this.decode(this.ids.slice(this.prefixOffset)));
  }

  private emit(text: string): string {
    const prefix = this.decode(this.ids.slice(this.prefixOffset, this.readOffset));
    this.prefixOffset = this.readOffset;
    this.readOffset = this.ids.length;
    return text.slice(prefix.length);
  }
}
