import { randomInt } from 'node:crypto';

/**
 * Per-sequence random stream (mulberry32 over a splitmix32-mixed seed). One stream per generated sequence, so a
 * sequence's draws never depend on which other sequences share its batch.
 */
export class SequenceRandom {
  private state: number;

  constructor(seed: number, sequenceIndex: number) {
    this.state = splitmix32((seed >>> 0) ^ Math.imul(sequenceIndex + 1, 0x9e3779b9));
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
}

function splitmix32(value: number): number {
  let z = (value + 0x9e3779b9) >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
  return (z ^ (z >>> 16)) >>> 0;
}

/** Seed for a request that did not give one. */
export function randomSeed(): number {
  return randomInt(0, 2 ** 32 - 1);
}
