import * as fs from 'node:fs';

// Results come back from the engine in any order; lines go to the files in input order, each as soon as every line
// before it is written. Each line is one write of a whole line, so a killed run leaves at most one partial line.

export interface OutputLine {
  /** Which file: the output file, or the error file (the output file when no error file was given). */
  file: 'output' | 'errors';
  text: string;
}

export class OrderedOutput {
  private readonly pending = new Map<number, OutputLine>();
  private readonly outputFd: number;
  private readonly errorsFd: number | null;

  constructor(outputPath: string, errorsPath: string | undefined, private next: number) {
    this.outputFd = fs.openSync(outputPath, 'a');
    this.errorsFd = errorsPath ? fs.openSync(errorsPath, 'a') : null;
  }

  /** Index of the first request not written yet. */
  get written(): number {
    return this.next;
  }

  /** Lines held back because an earlier one is still running. */
  get held(): number {
    return this.pending.size;
  }

  put(index: number, line: OutputLine): void {
    this.pending.set(index, line);
    for (let ready = this.pending.get(this.next); ready; ready = this.pending.get(this.next)) {
      this.pending.delete(this.next);
      const fd = ready.file === 'errors' && this.errorsFd !== null ? this.errorsFd : this.outputFd;
      fs.writeSync(fd, `${ready.text}\n`);
      this.next++;
    }
  }

  close(): void {
    fs.closeSync(this.outputFd);
    if (this.errorsFd !== null) fs.closeSync(this.errorsFd);
  }
}
