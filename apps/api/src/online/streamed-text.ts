// What a streaming client has been sent, per sequence, checked against every attempt that generates the text.
//
// A prompt can run more than once: when the worker streaming it dies, BullMQ gives the job to another worker, which
// streams the text again from its start under a new attempt id. The client must never see that prefix twice. Each
// attempt's text is followed separately; the client gets only what extends the text it already has. A retry that
// reproduces the same text (greedy, or seeded sampling) resumes exactly where the client is; one that produces other
// text diverges, and the stream must end with an error rather than splice two different answers.

export type StreamStep = { send: string } | { diverged: true };

export class StreamedText {
  private readonly sent = new Map<number, string>();
  private readonly attempts = new Map<string, Map<number, string>>();

  /**
   * `prefixOf`: text each sequence's answer starts with before what the worker streams (echo: the prompt, which the
   * stored result's text holds and the generated deltas do not).
   */
  constructor(private readonly prefixOf: (sequence: number) => string = () => '') {}

  /** A delta of `attempt` for `sequence`: the text to send now ('' when the client already has it), or divergence. */
  delta(attempt: string, sequence: number, text: string): StreamStep {
    let texts = this.attempts.get(attempt);
    if (!texts) this.attempts.set(attempt, (texts = new Map()));
    const soFar = (texts.get(sequence) ?? this.prefixOf(sequence)) + text;
    texts.set(sequence, soFar);
    return this.extend(sequence, soFar);
  }

  /** The whole text of a finished sequence (from the stored result): what remains to send, or divergence. */
  final(sequence: number, text: string): StreamStep {
    return this.extend(sequence, text);
  }

  /** Text sent so far for a sequence. */
  sentText(sequence: number): string {
    return this.sent.get(sequence) ?? '';
  }

  private extend(sequence: number, text: string): StreamStep {
    const sent = this.sentText(sequence);
    if (text.length <= sent.length) return sent.startsWith(text) ? { send: '' } : { diverged: true };
    if (!text.startsWith(sent)) return { diverged: true };
    this.sent.set(sequence, text);
    return { send: text.slice(sent.length) };
  }
}
