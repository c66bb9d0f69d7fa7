/**
 * The package's one seeded generator, for everything that needs reproducible randomness: the
 * tuner's scratch slots, the fuzzer's cases, the GPU suites' data. Seeded runs print their seed,
 * and the same seed gives the same draws on every machine.
 *
 * xorshift32 (Marsaglia, "Xorshift RNGs", 2003: shifts 13, 17, 5): fast, never 0, and plenty for
 * test data and slot shuffles (it is no cryptographic generator). The seed is spread over the
 * state with a 32-bit finalising hash first, so nearby seeds give unrelated streams.
 */
export class Random {
  readonly seed: number;
  #state: number;

  constructor(seed: number) {
    this.seed = seed;
    let z = (Math.trunc(seed) + 0x9e3779b9) | 0;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    z ^= z >>> 16;
    // xorshift32 stays at 0 forever from 0, and only from 0.
    this.#state = z >>> 0 || 0x6d2b79f5;
  }

  /** A uniform 32-bit unsigned integer, never 0. */
  next32(): number {
    let x = this.#state;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#state = x >>> 0;
    return this.#state;
  }

  /** Uniform in [0, 1). */
  float(): number {
    return this.next32() / 0x100000000;
  }

  /** A uniform integer in [0, n). */
  below(n: number): number {
    return Math.floor(this.float() * n);
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.float() < p;
  }

  /** One element of `xs`, each as likely. */
  pick<T>(xs: readonly T[]): T {
    return xs[this.below(xs.length)]!;
  }

  /** Fills `out` with random bytes (four at a time where it is 4-byte aligned); returns it. */
  fill(out: Uint8Array): Uint8Array {
    let done = 0;
    if (out.byteOffset % 4 === 0) {
      const words = new Uint32Array(out.buffer, out.byteOffset, out.length >>> 2);
      for (let i = 0; i < words.length; ++i) words[i] = this.next32();
      done = words.length * 4;
    }
    for (let i = done; i < out.length; ++i) out[i] = this.next32() & 0xff;
    return out;
  }

  /** `length` random bytes. */
  bytes(length: number): Uint8Array {
    return this.fill(new Uint8Array(length));
  }

  /** `n` distinct slots drawn from [0, capacity), in random order: a partial Fisher-Yates shuffle. */
  uniqueSlots(n: number, capacity: number): number[] {
    if (!Number.isSafeInteger(n) || n < 0 || n > capacity) throw new RangeError(`cannot draw ${n} distinct slots from ${capacity}`);
    const all = Array.from({ length: capacity }, (_, i) => i);
    for (let i = 0; i < n; ++i) {
      const j = i + this.below(capacity - i);
      const t = all[i]!;
      all[i] = all[j]!;
      all[j] = t;
    }
    return all.slice(0, n);
  }
}
