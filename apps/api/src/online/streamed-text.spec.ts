import { StreamedText } from './streamed-text';

describe('StreamedText', () => {
  it('passes one attempt through as it comes', () => {
    const text = new StreamedText();
    expect(text.delta('a', 0, 'Hel')).toEqual({ send: 'Hel' });
    expect(text.delta('a', 0, 'lo')).toEqual({ send: 'lo' });
    expect(text.final(0, 'Hello')).toEqual({ send: '' });
    expect(text.sentText(0)).toBe('Hello');
  });

  it('resumes a retry that repeats the text exactly after what the client has, never sending the prefix twice', () => {
    const text = new StreamedText();
    text.delta('dead', 0, 'The quick');
    expect(text.delta('retry', 0, 'The ')).toEqual({ send: '' });
    expect(text.delta('retry', 0, 'quick brown')).toEqual({ send: ' brown' });
    // A late delta of the dead attempt adds nothing it had not already sent.
    expect(text.delta('dead', 0, ' ')).toEqual({ send: '' });
    expect(text.final(0, 'The quick brown fox')).toEqual({ send: ' fox' });
    expect(text.sentText(0)).toBe('The quick brown fox');
  });

  it('puts a prefix (echo: the prompt) before each sequence\'s streamed text, once, also across a retry', () => {
    const text = new StreamedText((sequence) => (sequence === 0 ? 'Q: ' : 'R: '));
    expect(text.delta('a', 0, 'yes')).toEqual({ send: 'Q: yes' });
    expect(text.delta('a', 1, 'no')).toEqual({ send: 'R: no' });
    expect(text.delta('retry', 0, 'yes')).toEqual({ send: '' });
    expect(text.final(0, 'Q: yes!')).toEqual({ send: '!' });
    expect(text.final(1, 'R: no')).toEqual({ send: '' });
  });

  it('reports a retry that produces other text, and a final text that contradicts what was sent', () => {
    const text = new StreamedText();
    text.delta('dead', 0, 'Paris is');
    expect(text.delta('retry', 0, 'Lyon')).toEqual({ diverged: true });
    const other = new StreamedText();
    other.delta('a', 0, 'yes');
    expect(other.final(0, 'no')).toEqual({ diverged: true });
  });

  it('follows each sequence of a request on its own', () => {
    const text = new StreamedText();
    text.delta('a', 0, 'one');
    text.delta('a', 1, 'two');
    expect(text.delta('b', 1, 'two!')).toEqual({ send: '!' });
    expect(text.final(0, 'one.')).toEqual({ send: '.' });
  });
});
