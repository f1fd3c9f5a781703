import * as fs from 'node:fs';
import type { ExternalLocation } from './onnx/model';

/** ORT mmaps external initializers only at offsets divisible by the allocation granularity (64 KiB on Windows). */
export const EXTERNAL_DATA_ALIGNMENT = 64 * 1024;

/** Appends tensors to the external data file, each starting at an aligned offset; streamed, never buffered whole. */
export class ExternalDataWriter {
  private readonly fd: number;
  private position = 0;
  private tensorStart = -1;

  constructor(path: string, readonly location: string) {
    this.fd = fs.openSync(path, 'w');
  }

  begin(): void {
    if (this.tensorStart >= 0) throw new Error('ExternalDataWriter: previous tensor not ended');
    this.position = Math.ceil(this.position / EXTERNAL_DATA_ALIGNMENT) * EXTERNAL_DATA_ALIGNMENT;
    this.tensorStart = this.position;
  }

  append(bytes: Uint8Array): void {
    let written = 0;
    while (written < bytes.length) {
      written += fs.writeSync(this.fd, bytes, written, bytes.length - written, this.position + written);
    }
    this.position += bytes.length;
  }

  end(): ExternalLocation {
    const location = { location: this.location, offset: this.tensorStart, length: this.position - this.tensorStart };
    this.tensorStart = -1;
    return location;
  }

  write(bytes: Uint8Array): ExternalLocation {
    this.begin();
    this.append(bytes);
    return this.end();
  }

  get size(): number {
    return this.position;
  }

  close(): void {
    fs.fsyncSync(this.fd);
    fs.closeSync(this.fd);
  }
}
