#!/usr/bin/env bun
/**
 * `bun scripts/tune_on_full_card.ts [--free-gib 1] [--device 0]`: the production case of first-use
 * tuning. An engine allocates its KV pool before its first write, so the tuner finds the card nearly
 * full. This fills GPU memory until about `--free-gib` GiB are left (plain allocations, the way a
 * pool is taken), then makes a first write of a layout no profile knows, with a fresh cache dir,
 * and reports whether it tuned (and on what scratch set) or fell back to the built-in rule, and
 * that every byte it wrote is right. Exit status: 0 tuned and correct, 1 otherwise, 3 no GPU.
 */
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: { "free-gib": { type: "string", default: "1" }, device: { type: "string", default: "0" }, help: { type: "boolean", short: "h" } },
  strict: true,
});
if (values.help) {
  console.log("usage: bun scripts/tune_on_full_card.ts [--free-gib GIB] [--device N]\nExit status: 0 tuned and correct, 1 otherwise, 3 no usable GPU here.");
  process.exit(0);
}
const freeGib = Number(values["free-gib"]);
const device = Number(values.device);
// A fresh cache dir and tuning on, set before mla-kv reads them.
const cacheDir = mkdtempSync(join(tmpdir(), "mla-kv-full-card-"));
process.env.MLA_KV_CACHE_DIR = cacheDir;
process.env.MLA_KV_AUTOTUNE = "1";
process.env.MLA_KV_QUIET = "0";

const m = await import("../mod.ts");
const { deviceFreeMemory } = await import("../src/device.ts");
const { allocScratch } = await import("../autotune/scratch.ts");
const { copyLayout } = await import("../src/layout_key.ts");

const problem = m.gpuProblem(device);
if (problem !== null) {
  console.error(`tune_on_full_card: ${problem.message}`);
  process.exit(3);
}
const ballast: InstanceType<typeof m.DeviceTensor>[] = [];
const target = freeGib * 2 ** 30;
// Take memory in 1 GiB pieces, then smaller ones, until about `target` bytes are left.
for (let piece = 2 ** 30; piece >= 2 ** 24; piece /= 2) {
  while (deviceFreeMemory(device) - piece >= target) ballast.push(m.allocTensor("u8", [piece], { device }));
}
const free = deviceFreeMemory(device);
console.log(`tune_on_full_card: ${m.deviceInfo(device).name}: ${(free / 2 ** 30).toFixed(2)} GiB free after ${ballast.length} allocations`);

// What the tuner will time on: the scratch set it sizes from what is free now.
const layout = copyLayout(1024, 128, 8);
const probe = allocScratch(layout, { device });
console.log(`tune_on_full_card: scratch set: ${probe.layers} layers x ${probe.capacity} slots, n up to ${probe.maxN}, ${(probe.bytes / 2 ** 20).toFixed(0)} MiB`);
probe.free();

// The first write of bf16 512+64 with int64 loc: it tunes now (or falls back, saying so on stderr).
const n = 4096, capacity = 65536;
using stream = m.Stream.create(device);
using cache = m.allocTensor("bf16", [capacity, 576], { device });
const poison = new Uint16Array(capacity * 576).fill(0xdead);
cache.upload(poison, { stream });
const nope = new Uint16Array(n * 512).map((_, i) => ((i * 40503) & 0xffff) | 1);
const rope = new Uint16Array(n * 64).map((_, i) => ((i * 2654435761) >>> 16) | 1);
const slots = Array.from({ length: n }, (_, i) => (i * 7919) % capacity);
using kNope = m.fromHost(nope, "bf16", [n, 512], { device, stream });
using kRope = m.fromHost(rope, "bf16", [n, 64], { device, stream });
using loc = m.fromHost(BigInt64Array.from(slots, BigInt), "i64", [n], { device, stream });
const t0 = performance.now();
m.setMlaKvBuffer(cache, loc, kNope, kRope, { stream });
stream.synchronize();
const ms = performance.now() - t0;
slots.forEach((s, i) => {
  poison.set(nope.subarray(i * 512, i * 512 + 512), s * 576);
  poison.set(rope.subarray(i * 64, i * 64 + 64), s * 576 + 512);
});
const got = cache.download({ stream });
let wrong = 0;
for (let i = 0; i < got.length; ++i) if (got[i] !== poison[i]) ++wrong;
const profiles = readdirSync(cacheDir).filter((f) => f.endsWith(".json"));
console.log(`tune_on_full_card: first write ${ms.toFixed(0)} ms; profiles stored: ${profiles.length}; ${wrong} of ${got.length} elements wrong`);
for (const t of ballast) t.free();
rmSync(cacheDir, { recursive: true, force: true });
process.exit(profiles.length === 1 && wrong === 0 ? 0 : 1);
