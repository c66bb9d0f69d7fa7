#!/usr/bin/env bun
/**
 * `bun run fuzz`: random writes on the GPU, each checked byte for byte against the host reference
 * over the whole cache and guard regions before and after it, so a stray write anywhere shows.
 *
 *   bun run fuzz [--cases 10000] [--seed N] [--max-n 70000]
 *
 * Each case draws a row layout (the standard ones or odd sizes), dtype, loc dtype, n (0..max-n),
 * capacity, cache rows wider than the row, a base address that may be only element-aligned,
 * sources that are contiguous, column slices of a wider tensor or [n, 1, d] views, unique random
 * slots with some negative (padding) and some past the capacity, and a path: automatic, forced
 * vector with random warps and rows, or forced TMA. A forced TMA that cannot run must be refused
 * with nothing written. Then: 0 mismatching bytes and the out-of-range count reported exactly.
 * A failure prints the seed and the case, so `--seed` reproduces it.
 *
 * First-use tuning is off (MLA_KV_AUTOTUNE=0 unless set): the odd layouts are new to the tuner
 * almost every case, and timing them is not what is being tested. The standard layouts still
 * dispatch through the bundled profiles, the odd ones through the built-in rule.
 */
process.env.MLA_KV_AUTOTUNE ??= "0";
import { check, native } from "../ffi/native.ts";
import { startFailure } from "../ffi/diagnose.ts";
import {
  checkErrors,
  gpuProblem,
  MlaKvError,
  setMlaKvBuffer,
  Stream,
  supportsPath,
  wrapDevicePointer,
  type DType,
  type RowsPerWarp,
  type Warps,
} from "../mod.ts";
import { allocTensor } from "../src/tensor.ts";
import { dtypeBytes } from "../src/dtypes.ts";
import { Random } from "../autotune/random.ts";
import { EXIT, exitStatusHelp, parseFlags, UsageError } from "../cli/usage.ts";

const HELP = `Usage: bun run fuzz [--cases N] [--seed N] [--max-n N]

Random writes on GPU 0, each checked byte for byte against the host reference over the whole
cache and a guard region before and after it. A failure prints the seed and the case.

Flags:
  --cases N    Cases to run (default 10000).
  --seed N     Seed of the run (default: a random one, printed); the same seed, the same cases.
  --max-n N    The largest n a case draws (default 70000).
  -h, --help   Show this help.

${exitStatusHelp("a case wrote a wrong byte or was refused (or the library did not load)")}
`;

let values: { cases: string; seed?: string; "max-n": string; help?: boolean };
try {
  values = parseFlags(process.argv.slice(2), {
    cases: { type: "string", default: "10000" },
    seed: { type: "string" },
    "max-n": { type: "string", default: "70000" },
    help: { type: "boolean", short: "h" },
  });
} catch (error) {
  if (!(error instanceof UsageError)) throw error;
  console.error(`fuzz: ${error.message}; see --help.`);
  process.exit(EXIT.usage);
}
if (values.help === true) {
  process.stdout.write(HELP);
  process.exit(EXIT.ok);
}
const wholeNumber = (text: string | undefined) => (text !== undefined && /^[0-9]+$/.test(text) ? Number(text) : Number.NaN);
const CASES = wholeNumber(values.cases);
const MAX_N = wholeNumber(values["max-n"]);
const SEED = values.seed !== undefined ? wholeNumber(values.seed) : Math.floor(Math.random() * 2 ** 31);
if (!Number.isSafeInteger(CASES) || CASES < 1 || !Number.isSafeInteger(MAX_N) || MAX_N < 1 || !Number.isSafeInteger(SEED)) {
  console.error("fuzz: --cases and --max-n take whole numbers from 1, --seed a whole number; see --help.");
  process.exit(EXIT.usage);
}

const problem = gpuProblem(0);
if (problem !== null) {
  const { line, exitCode } = startFailure("fuzz", problem);
  console.error(line);
  process.exit(exitCode);
}

// ---- a seeded generator ---------------------------------------------------------------------
const rng = new Random(SEED);
// Source bytes come from one pool of random bytes made once, at a random offset per case:
// generating 100 MB per large case would cost more than the write and its check.
const POOL_BYTES = 192 * 2 ** 20;
const pool = rng.bytes(POOL_BYTES);
function randomBytes(length: number): Uint8Array {
  const start = rng.below(POOL_BYTES - length);
  return pool.subarray(start, start + length);
}

// ---- arenas: one device allocation each, reused by every case ---------------------------------
const GUARD = 4096;
const MAX_ROW = 1400; // bytes of the widest cache row drawn below
const CACHE_ARENA = 2 * GUARD + Math.ceil(MAX_N * 1.5 + 64) * MAX_ROW + 64;
const SOURCE_ARENA = (MAX_N + 1) * MAX_ROW + 64;
const LOC_ARENA = (MAX_N + 1) * 8 + 64;
const cacheArena = allocTensor("u8", [CACHE_ARENA]);
const nopeArena = allocTensor("u8", [SOURCE_ARENA]);
const ropeArena = allocTensor("u8", [SOURCE_ARENA]);
const locArena = allocTensor("u8", [LOC_ARENA]);
const stream = Stream.create(0);
const tmaOnGpu = supportsPath(0, "tma");
const lib = native();
const upload = (dst: number, bytes: Uint8Array) => check(lib.mla_kv_memcpy_htod(0, dst, bytes, bytes.length, stream.handle), "htod");

const STANDARD: Array<[DType, number, number]> = [
  ["bf16", 512, 64], ["bf16", 512, 32], ["bf16", 256, 64], ["bf16", 128, 64], ["bf16", 528, 64],
  ["fp16", 512, 64], ["fp16", 512, 32], ["fp16", 256, 64], ["fp16", 128, 64], ["fp16", 528, 64],
  ["u8", 528, 128],
];
const eb = dtypeBytes;

interface CaseResult {
  description: string;
  bytesChecked: number;
  error?: string;
}

function runCase(index: number): CaseResult {
  // Layout
  let [dtype, nope, rope] = rng.pick(STANDARD);
  if (rng.chance(0.3)) {
    dtype = rng.pick(["bf16", "fp16", "u8"] as DType[]);
    nope = 1 + rng.below(560 / eb(dtype));
    rope = rng.below(130 / eb(dtype));
  }
  const e = eb(dtype);
  const width = nope + rope + (rng.chance(0.3) ? 1 + rng.below(32) : 0);
  // n: a few empty, mostly log-uniform up to 8192, and 2 % between 16384 and the maximum
  const small = Math.min(MAX_N, 8192);
  const n = rng.chance(0.02)
    ? 0
    : rng.chance(0.02) && MAX_N > 16384
      ? 16384 + rng.below(MAX_N - 16384 + 1)
      : Math.floor(Math.exp(rng.float() * Math.log(small + 1))) - 1;
  const capacity = n + 1 + rng.below(Math.max(1, n >> 1) + 64);
  const locDtype = rng.chance(0.5) ? "i32" : "i64";
  // Cache placement: 16-byte aligned, or only element-aligned
  const cacheOffset = GUARD + (rng.chance(0.7) ? 0 : e * (1 + rng.below(7)));
  const cacheBytes = capacity * width * e;
  const region = cacheOffset + cacheBytes + GUARD; // guards on both sides
  // Sources: contiguous, slices of one wider tensor, or [n, 1, d] views
  const layoutKind = rng.pick(["contiguous", "slices", "views"] as const);
  const extra = layoutKind === "slices" ? rng.below(40) : 0;
  const srcStride = layoutKind === "slices" ? nope + rope + extra : 0;
  const srcOffset = rng.chance(0.7) ? 0 : e * (1 + rng.below(7));
  const nopeBytesPerRow = (layoutKind === "slices" ? srcStride : nope) * e;
  const ropeBytesPerRow = (layoutKind === "slices" ? srcStride : rope) * e;
  const nopeHost = randomBytes(srcOffset + Math.max(1, n) * nopeBytesPerRow + 16);
  const ropeHost = layoutKind === "slices" ? nopeHost : randomBytes(srcOffset + Math.max(1, n) * ropeBytesPerRow + 16);
  // Slots: unique, then some padding and some out of range
  const loc = rng.uniqueSlots(n, capacity);
  const oddsBad = rng.chance(0.3) ? 0.05 : 0;
  let outOfRange = 0, firstBad = -1;
  for (let i = 0; i < n; ++i) {
    if (rng.chance(oddsBad)) loc[i] = -1 - rng.below(1000);
    else if (rng.chance(oddsBad)) {
      loc[i] = capacity + rng.below(100000);
      ++outOfRange;
      if (firstBad < 0) firstBad = i;
    }
  }
  // Path
  const mode = rng.pick(["auto", "auto", "vector", "tma"] as const);
  const warps = rng.pick([1, 2, 4, 8, 16] as Warps[]);
  const rowsPerWarp = rng.pick([1, 2, 4] as RowsPerWarp[]);
  const pdl = rng.chance(0.5);
  const description = `case ${index}: ${dtype} ${nope}+${rope} in rows of ${width}, n=${n}, capacity=${capacity}, ${locDtype} loc, ` +
    `${layoutKind} sources (+${srcOffset} B), cache +${cacheOffset - GUARD} B, ${mode}${mode === "auto" ? "" : ` w${warps} r${rowsPerWarp}`}, pdl=${pdl}, ` +
    `${outOfRange} out of range`;

  // Device side: poison the region, upload sources and loc, describe them as tensors.
  const poison = rng.below(256);
  check(lib.mla_kv_memset(0, cacheArena.ptr, poison, region, stream.handle), "memset");
  upload(nopeArena.ptr, nopeHost);
  if (ropeHost !== nopeHost) upload(ropeArena.ptr, ropeHost);
  const locBytes = locDtype === "i32" ? new Uint8Array(Int32Array.from(loc).buffer) : new Uint8Array(BigInt64Array.from(loc, BigInt).buffer);
  if (n > 0) upload(locArena.ptr, locBytes);
  const cache = wrapDevicePointer({ ptr: cacheArena.ptr + cacheOffset, dtype, shape: [capacity, width] });
  const locT = wrapDevicePointer({ ptr: locArena.ptr, dtype: locDtype, shape: [n] });
  let kNope, kRope;
  if (layoutKind === "slices") {
    const wide = wrapDevicePointer({ ptr: nopeArena.ptr + srcOffset, dtype, shape: [n, srcStride] });
    kNope = wide.narrow(1, 0, nope);
    kRope = wide.narrow(1, nope, rope);
  } else {
    kNope = wrapDevicePointer({ ptr: nopeArena.ptr + srcOffset, dtype, shape: [n, nope] });
    kRope = wrapDevicePointer({ ptr: ropeArena.ptr + srcOffset, dtype, shape: [n, rope] });
    if (layoutKind === "views") {
      kNope = kNope.view([n, 1, nope]);
      kRope = kRope.view([n, 1, rope]);
    }
  }

  // The expected region: poison, with the reference rows written.
  const want = new Uint8Array(region).fill(poison);
  const rowBytes = width * e;
  for (let i = 0; i < n; ++i) {
    const slot = loc[i]!;
    if (slot < 0 || slot >= capacity) continue;
    const at = cacheOffset + slot * rowBytes;
    const ns = srcOffset + i * nopeBytesPerRow;
    want.set(nopeHost.subarray(ns, ns + nope * e), at);
    const rs = layoutKind === "slices" ? srcOffset + i * nopeBytesPerRow + nope * e : srcOffset + i * ropeBytesPerRow;
    want.set(ropeHost.subarray(rs, rs + rope * e), at + nope * e);
  }

  let refused = false;
  try {
    const options = mode === "auto" ? { stream, pdl } : { stream, pdl, path: mode, warps, rowsPerWarp };
    if (nope + rope === 0) throw new Error("unreachable: empty row");
    setMlaKvBuffer(cache, locT, kNope, kRope, options);
  } catch (error) {
    // Only a forced TMA that this write cannot use may be refused, and then nothing is written.
    if (!(error instanceof MlaKvError && error.code === "UNSUPPORTED" && mode === "tma")) {
      return { description, bytesChecked: 0, error: `threw ${error instanceof MlaKvError ? error.code : ""}: ${(error as Error).message}` };
    }
    refused = true;
  }
  // checkErrors waits for the stream the write ran on, so it has finished before anything is read
  // back, and reads that stream's count of skipped rows.
  let reported = 0;
  try {
    checkErrors({ stream });
  } catch (error) {
    if (!(error instanceof MlaKvError && error.code === "OUT_OF_RANGE_LOC")) throw error;
    reported = Number(/(\d+) row\(s\)/.exec(error.message)?.[1] ?? -1);
    if (!error.message.includes(`row index ${firstBad}`)) {
      return { description, bytesChecked: 0, error: `out-of-range report names the wrong first row: ${error.message}` };
    }
  }
  const expectedReport = refused || n === 0 ? 0 : outOfRange;
  if (reported !== expectedReport) {
    return { description, bytesChecked: 0, error: `reported ${reported} out-of-range rows, expected ${expectedReport}` };
  }
  const got = new Uint8Array(region);
  check(lib.mla_kv_memcpy_dtoh(0, got, cacheArena.ptr, region, stream.handle), "dtoh");
  check(lib.mla_kv_stream_synchronize(0, stream.handle), "sync");
  const expected = refused ? new Uint8Array(region).fill(poison) : want;
  if (Buffer.compare(got, expected) !== 0) {
    let first = 0;
    while (got[first] === expected[first]) ++first;
    let bad = 0;
    for (let i = first; i < region; ++i) if (got[i] !== expected[i]) ++bad;
    const where = first < cacheOffset ? "in the guard before the cache" : first >= cacheOffset + cacheBytes ? "in the guard after the cache" : `in row ${Math.floor((first - cacheOffset) / rowBytes)}`;
    return { description, bytesChecked: region, error: `${bad} bytes differ, the first at byte ${first} (${where})${refused ? " after a refused call" : ""}` };
  }
  return { description, bytesChecked: region };
}

console.log(`fuzz: seed ${SEED}, ${CASES} cases, n up to ${MAX_N}, TMA ${tmaOnGpu ? "available" : "not available"} on this GPU`);
const t0 = performance.now();
let bytes = 0, failures = 0;
for (let i = 0; i < CASES; ++i) {
  const r = runCase(i);
  bytes += r.bytesChecked;
  if (r.error) {
    ++failures;
    console.error(`fuzz: FAIL ${r.description}\n      ${r.error}`);
    if (failures >= 10) break;
  }
  if ((i + 1) % Math.max(1, Math.floor(CASES / 10)) === 0) {
    process.stderr.write(`fuzz: ${i + 1}/${CASES} cases, ${(bytes / 2 ** 30).toFixed(2)} GiB checked, ${failures} failed, ${((performance.now() - t0) / 1000).toFixed(0)} s\n`);
  }
}
for (const t of [cacheArena, nopeArena, ropeArena, locArena]) t.free();
stream.destroy();
const seconds = (performance.now() - t0) / 1000;
console.log(`fuzz: seed ${SEED}: ${CASES - failures} of ${CASES} cases byte-exact, ${(bytes / 2 ** 30).toFixed(2)} GiB checked (cache and guard regions), ${failures} failed, in ${seconds.toFixed(1)} s`);
process.exit(failures === 0 ? EXIT.ok : EXIT.failed);
