import { IncrementalDetokenizer, SequenceStopper, StopStringMatcher } from './stopping';

// ids are bytes of a UTF-8 string: decoding a partial character gives U+FFFD, as a byte-level BPE does.
const bytesDecoder = { decode: (ids: number[]) => Buffer.from(ids).toString('utf8') };
const idsOf = (text: string) => Array.from(Buffer.from(text, 'utf8'));

describe('IncrementalDetokenizer', () => {
  it('releases a multi-byte character only once complete', () => {
    const detokenizer = new IncrementalDetokenizer(bytesDecoder);
    const pieces = idsOf('aé€b').map((id) => detokenizer.push(id));
    expect(pieces).toEqual(['a', '', 'é', '', '', '€', 'b']);
    expect(detokenizer.text).toBe('aé€b');
  });

  it('releases an invalid byte run after 4 held tokens instead of holding it forever', () => {
    const detokenizer = new IncrementalDetokenizer(bytesDecoder);
    const pieces = [0xe2, 0x82, 0xe2, 0x82].map((id) => detokenizer.push(id));
    expect(pieces.slice(0, 3)).toEqual(['', '', '']);
    expect(pieces[3]).toContain('\uFFFD');
    expect(detokenizer.text).toBe(Buffer.from([0xe2, 0x82, 0xe2, 0x82]).toString('utf8'));
  });
});

describe('StopStringMatcher', () => {
  it('finds a stop string spanning the last append and holds back a possible start', () => {
    const matcher = new StopStringMatcher(['END', '\n\n']);
    expect(matcher.find('abc EN', 4)).toBe(-1);
    expect(matcher.pendingTail('abc EN')).toBe(2);
    expect(matcher.find('abc END', 6)).toBe(4);
    expect(matcher.pendingTail('abc\n')).toBe(1);
  });
});

describe('SequenceStopper', () => {
  const eos = 0;
  const stopper = (stop: string[], maxNewTokens = 100, ignoreEos = false) => new SequenceStopper(bytesDecoder, { stop, maxNewTokens, ignoreEos }, eos);

  it('stops at a stop string spanning tokens, streams only text before it, and excludes it from the text', () => {
    const sequence = stopper(['STOP']);
    const streamed: string[] = [];
    let reason;
    for (const id of idsOf('hello STOP and more')) {
      const outcome = sequence.accept(id);
      streamed.push(outcome.text);
      reason = outcome.finishReason;
      if (reason) break;
    }
    expect(reason).toBe('stop');
    expect(sequence.text).toBe('hello ');
    expect(streamed.join('')).toBe('hello ');
    expect(sequence.tokens.length).toBe('hello STOP'.length);
  });

  it('releases a held-back prefix when the stop string does not follow', () => {
    const sequence = stopper(['STOP']);
    const streamed = idsOf('ST!').map((id) => sequence.accept(id).text);
    expect(streamed).toEqual(['', '', 'ST!']);
  });

  it('stops at eos (kept in tokens, not in text) unless ignoreEos', () => {
    const sequence = stopper([]);
    sequence.accept(65);
    expect(sequence.accept(eos).finishReason).toBe('eos');
    expect(sequence.tokens).toEqual([65, eos]);
    expect(sequence.text).toBe('A');
    const ignoring = stopper([], 3, true);
    expect(ignoring.accept(eos).finishReason).toBeUndefined();
  });

  it('stops at maxNewTokens exactly', () => {
    const sequence = stopper([], 3);
    expect(sequence.accept(65).finishReason).toBeUndefined();
    expect(sequence.accept(66).finishReason).toBeUndefined();
    expect(sequence.accept(67)).toEqual({ text: 'C', finishReason: 'length' });
    expect(() => sequence.accept(68)).toThrow(/finished/);
  });
});
