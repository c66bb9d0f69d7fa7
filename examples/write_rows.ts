#!/usr/bin/env bun
/**
 * `bun run example`: writes 4095 DeepSeek MLA rows (bf16, 512 nope + 64 rope) and skips one
 * padding row (loc = -1) of a batch of 4096, into a paged KV cache of 64 Ki slots on GPU 0, reads
 * the cache back and checks every byte against a plain host copy, then prints what it verified.
 * Exit status: 0 verified, 3 no usable GPU here (the message says why: no driver, an old one, none
 * visible), 1 any other failure (a missing library, a missing Deno permission, a wrong byte).
 */
import { allocTensor, deviceInfo, fromHost, gpuProblem, setMlaKvBuffer, Stream } from "../mod.ts";
import { startFailure } from "../ffi/diagnose.ts";

const PAGES = 4096, PAGE_SIZE = 16, NOPE = 512, ROPE = 64, N = 4096;
const WIDTH = NOPE + ROPE;

const problem = gpuProblem(0);
if (problem !== null) {
  const { line, exitCode } = startFailure("example", problem);
  console.error(line);
  process.exit(exitCode);
}
const info = deviceInfo(0);

// Random rows (never zeros: they would hide unwritten bytes) and distinct random slots, with one
// padding row (loc = -1) that must be skipped.
const nopeHost = new Uint16Array(N * NOPE).map(() => (Math.random() * 0xffff) | 1);
const ropeHost = new Uint16Array(N * ROPE).map(() => (Math.random() * 0xffff) | 1);
const slots = new Set<number>();
while (slots.size < N) slots.add(Math.floor(Math.random() * PAGES * PAGE_SIZE));
const locHost = BigInt64Array.from(slots, (s) => BigInt(s));
locHost[7] = -1n;

using stream = Stream.create(0);
using kvBuffer = allocTensor("bf16", [PAGES, PAGE_SIZE, WIDTH]);
const poison = new Uint16Array(PAGES * PAGE_SIZE * WIDTH).fill(0xdead);
kvBuffer.upload(poison, { stream });
using kNope = fromHost(nopeHost, "bf16", [N, NOPE], { stream });
using kRope = fromHost(ropeHost, "bf16", [N, ROPE], { stream });
using loc = fromHost(locHost, "i64", [N], { stream });

const t0 = performance.now();
setMlaKvBuffer(kvBuffer, loc, kNope, kRope, { stream });
stream.synchronize();
const firstCallMs = performance.now() - t0;

// The plain reference: row i = [kNope[i] | kRope[i]] at slot loc[i]; every other byte is poison.
const want = poison;
locHost.forEach((slot, i) => {
  if (slot < 0n) return;
  const at = Number(slot) * WIDTH;
  want.set(nopeHost.subarray(i * NOPE, (i + 1) * NOPE), at);
  want.set(ropeHost.subarray(i * ROPE, (i + 1) * ROPE), at + NOPE);
});
const got = kvBuffer.download({ stream });
let wrong = 0;
for (let i = 0; i < got.length; ++i) if (got[i] !== want[i]) ++wrong;

console.log(`example: ${info.name} (sm_${info.computeCapability.join("")})`);
console.log(`example: wrote ${N - 1} rows of ${WIDTH} bf16 (1 padding row of ${N} skipped) into a ${PAGES}x${PAGE_SIZE}-slot cache in ${firstCallMs.toFixed(1)} ms (first call, tuning included if this GPU had no profile)`);
console.log(`example: ${wrong === 0 ? "verified" : "MISMATCH in"} all ${got.length * 2} cache bytes against the host reference${wrong ? `: ${wrong} elements differ` : ""}`);
process.exit(wrong === 0 ? 0 : 1);
