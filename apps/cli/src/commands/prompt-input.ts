import * as fs from 'node:fs';

// Prompts for `generate` from arguments, a file or stdin. One prompt per line; a line that starts with `"` or `{`
// is JSON (a string, or an object with a "prompt" string), so a prompt can hold newlines.

export function promptsFromText(text: string, source: string): string[] {
  const prompts: string[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/\r$/, '');
    if (line.trim() === '') return;
    if (!/^\s*["{]/.test(line)) {
      prompts.push(line);
      return;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch (error) {
      throw new Error(`${source} line ${i + 1}: starts like JSON but is not valid JSON (${(error as Error).message})`);
    }
    if (typeof parsed === 'string') prompts.push(parsed);
    else if (typeof parsed === 'object' && parsed !== null && typeof (parsed as { prompt?: unknown }).prompt === 'string') prompts.push((parsed as { prompt: string }).prompt);
    else throw new Error(`${source} line ${i + 1}: a JSON line must be a string or an object with a "prompt" string`);
  });
  return prompts;
}

async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * The prompts to run: the arguments, then those of --file (`-` = stdin). With neither, stdin when it is not a
 * terminal. No prompt at all is an error that says how to give one.
 */
export async function collectPrompts(args: string[], file: string | undefined, stdin: NodeJS.ReadStream = process.stdin): Promise<string[]> {
  const prompts = [...args];
  if (file === '-' || (file === undefined && args.length === 0 && !stdin.isTTY)) {
    prompts.push(...promptsFromText(await readAll(stdin), 'stdin'));
  } else if (file !== undefined) {
    if (!fs.existsSync(file)) throw new Error(`--file ${file}: no such file`);
    prompts.push(...promptsFromText(fs.readFileSync(file, 'utf8'), file));
  }
  if (prompts.length === 0) throw new Error('no prompt: give prompts as arguments, with --file <path> (one per line), or on stdin');
  return prompts;
}
