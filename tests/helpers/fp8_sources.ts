/**
 * Source rows for the quantizing writes' tests: ordinary activations mixed with every awkward
 * value — NaN (both signs, payloads), ±inf, subnormals, values past the fp8 range, -0, all-zero
 * tiles, tiny-amax tiles — and raw random bit patterns. Seeded, so a failure reproduces.
 */
import { f32ToBf16Bits, type SourceFormat } from "./fp8_reference.ts";
import type { Rng } from "./gpu.ts";

const f16 = new Float16Array(1);
const f16Bits = new Uint16Array(f16.buffer);

/** The 16-bit pattern of x in `source` (round to nearest even). */
export function encode16(x: number, source: SourceFormat): number {
  if (source === "bf16") return f32ToBf16Bits(Math.fround(x), x < 0 || Object.is(x, -0) ? 1 : 0);
  f16[0] = x;
  return f16Bits[0]!;
}

/**
 * NaN (quiet, signalling-looking payload, negative), ±inf, ±0, the smallest and largest
 * subnormals, the largest finite value, and a value between e4m3's 448 and the next step.
 */
export const SPECIALS: Readonly<Record<SourceFormat, readonly number[]>> = {
  bf16: [0x7fc0, 0x7f81, 0xffc1, 0x7f80, 0xff80, 0x0000, 0x8000, 0x0001, 0x807f, 0x7f7f, 0x43e8],
  fp16: [0x7e00, 0x7c01, 0xfe01, 0x7c00, 0xfc00, 0x0000, 0x8000, 0x0001, 0x83ff, 0x7bff, 0x5f40],
};

/** Recipes of {@link sourceRow}; a test may ask for one. */
export const RECIPES = 7;

/** One source row of `count` elements, by a recipe (random unless given). */
export function sourceRow(rng: Rng, count: number, source: SourceFormat, recipe = rng.below(RECIPES)): Uint16Array {
  const row = new Uint16Array(count);
  const activation = (spread: number, centre = 0) => {
    const magnitude = (1 + rng.below(1 << 20) / (1 << 20)) * 2 ** (rng.below(2 * spread + 1) - spread + centre);
    return rng.below(2) ? -magnitude : magnitude;
  };
  const signedZero = () => (rng.below(2) ? 0x8000 : 0);
  for (let k = 0; k < count; ++k) {
    switch (recipe) {
      case 0: // raw random patterns: every class of value, in proportion to its share of codes
        row[k] = rng.below(0x10000);
        break;
      case 1: // activations around 1
        row[k] = encode16(activation(6), source);
        break;
      case 2: // a wide range, into fp8 subnormals and past its largest value
        row[k] = encode16(activation(source === "fp16" ? 14 : 40), source);
        break;
      case 3: // activations with specials sprinkled in
        row[k] = rng.below(8) === 0 ? SPECIALS[source][rng.below(SPECIALS[source].length)]! : encode16(activation(4), source);
        break;
      case 4: // source subnormals and zeros only
        row[k] = signedZero() | rng.below(source === "bf16" ? 0x80 : 0x400);
        break;
      case 5: // all-zero tiles (±0) for tiles of 64 and of 128: elements [0, 128) of every 256
        row[k] = (k >> 6) % 4 < 2 ? signedZero() : encode16(activation(3), source);
        break;
      default: // tiny amax: below 0.0448 (the pow2 floor) and, for half the rows, below 1e-4
        row[k] = encode16(activation(3, rng.below(2) ? -9 : -17), source);
    }
  }
  return row;
}

/** `n` source rows of `count` elements, row i at i * stride (stride >= count), by random recipes. */
export function sourceRows(rng: Rng, n: number, count: number, stride: number, source: SourceFormat): Uint16Array {
  const rows = new Uint16Array(Math.max(1, n * stride));
  for (let i = 0; i < n; ++i) rows.set(sourceRow(rng, count, source), i * stride);
  return rows;
}
