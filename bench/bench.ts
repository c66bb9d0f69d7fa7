#!/usr/bin/env bun
/**
 * `bun run bench`: every write path against the floors and the baseline design, side by side in
 * one run, timed the way an engine runs them (8 layers per CUDA graph, replayed, CUDA events,
 * best of 5), then the host-side cost of the TypeScript layer against a C loop of the same call.
 *
 *   bun run bench [--layout bf16|u8] [--part core|fp8|pdl|reserved] [--quick] [--out DIR]
 *
 * Parts (all by default): core, the paths against the floors, the baseline, the host loop and the
 * tuner; fp8, every quantizing format against its unfused sequence and the bf16 write
 * (bench/fused_fp8.ts); pdl, a producer kernel then the write; reserved, the cost of a reserved
 * slot (bench/fused.ts).
 *
 * Writes bench/results/<gpu>.json and one SVG per layout; prints the tables and the targets.
 */
import { Bench } from "tinybench";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { allocTensor, deviceCount, deviceInfo, libraryInfo, setMlaKvBuffer, Stream, supportsPath } from "../mod.ts";
import type { DType, Path, RowsPerWarp, Warps } from "../mod.ts";
import { check, native } from "../ffi/native.ts";
import { PACKAGE_ROOT } from "../ffi/find_library.ts";
import { allocScratch, type Scratch } from "../autotune/scratch.ts";
import { timeGraphPerCall } from "../autotune/graph_timer.ts";
import { renderLinePlot } from "../src/svg_plot.ts";
import { createMeasurer } from "../autotune/measure.ts";
import { tuneLayoutWithStats } from "../autotune/search.ts";
import { openBenchLibrary } from "./bench_library.ts";
import { measurePdl, measureReservedSlot, type PdlRow, type ReservedSlotRow } from "./fused.ts";
import { measureFp8, type Fp8Row } from "./fused_fp8.ts";

const LAYERS = 8;
const NS = [1, 8, 32, 128, 512, 768, 1024, 2048, 4096, 8192, 16384, 32768];
const LAYOUTS = {
  bf16: { name: "bf16 512+64", dtype: "bf16" as DType, nopeElems: 512, ropeElems: 64, elemBytes: 2 },
  u8: { name: "u8 528+128", dtype: "u8" as DType, nopeElems: 528, ropeElems: 128, elemBytes: 1 },
};
type LayoutName = keyof typeof LAYOUTS;
const PARTS = ["core", "fp8", "pdl", "reserved"] as const;
type Part = (typeof PARTS)[number];
const FUSED_NS = [1, 32, 128, 1024, 4096, 16384, 32768];
const PDL_NS = [1, 8, 128, 1024, 4096, 16384];
const RESERVED_NS = [128, 16384];

interface Row {
  n: number;
  auto: number;
  /** auto with programmatic dependent launch: each layer's write may start as the previous ends. */
  autoPdl: number;
  vector: number;
  vectorConfig: string;
  tma: number | null;
  tmaConfig: string | null;
  memcpy: number;
  empty: number;
  baseline: number;
}

const cfgName = (c: { warps: number; rowsPerWarp: number }) => `w${c.warps}r${c.rowsPerWarp}`;

function main(): number {
  const { values } = parseArgs({
    options: {
      layout: { type: "string", multiple: true },
      part: { type: "string", multiple: true },
      quick: { type: "boolean", default: false },
      out: { type: "string", default: join(PACKAGE_ROOT, "bench", "results") },
      help: { type: "boolean", default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log("usage: bun run bench [--layout bf16|u8]... [--part core|fp8|pdl|reserved]... [--quick] [--out DIR]");
    return 0;
  }
  const parts = new Set((values.part ?? [...PARTS]) as Part[]);
  for (const p of parts) if (!PARTS.includes(p)) throw new Error(`bench: unknown --part ${p} (${PARTS.join(", ")})`);
  const layouts = (values.layout ?? ["bf16", "u8"]) as LayoutName[];
  for (const l of layouts) if (!(l in LAYOUTS)) throw new Error(`bench: unknown --layout ${l} (bf16 or u8)`);

  let count = 0;
  try {
    count = deviceCount();
  } catch (error) {
    console.error(`bench: no NVIDIA GPU is usable here (${(error as Error).message.split("\n")[0]}); the benchmark needs one.`);
    return 1;
  }
  if (count === 0) {
    console.error("bench: the driver reports no GPU; the benchmark needs one.");
    return 1;
  }
  const info = deviceInfo(0);
  const tmaOk = supportsPath(0, "tma");
  const lib = libraryInfo();
  const ref = openBenchLibrary();
  console.log(`bench: ${info.name}, sm_${info.computeCapability.join("")}, ${info.smCount} SMs, L2 ${(info.l2Bytes / 2 ** 20).toFixed(0)} MB; library ${lib.buildId}`);

  const ns = values.quick ? [1, 128, 4096, 16384] : NS;
  const stream = Stream.create(0);
  const results: Record<string, Row[]> = {};
  for (const name of parts.has("core") ? layouts : []) {
    const L = LAYOUTS[name];
    const rowBytes = (L.nopeElems + L.ropeElems) * L.elemBytes;
    const maxN = ns[ns.length - 1]!;
    const scratch = allocScratch({ dtype: L.dtype, nopeElems: L.nopeElems, ropeElems: L.ropeElems, locBytes: 8 }, { layers: LAYERS, maxN });
    const copySrc = Array.from({ length: LAYERS }, () => allocTensor("u8", [maxN * rowBytes]));
    const copyDst = Array.from({ length: LAYERS }, () => allocTensor("u8", [maxN * rowBytes]));
    try {
      results[L.name] = [];
      for (const n of ns) {
        const row = measureN(n, scratch, stream, tmaOk, ref, L.elemBytes, rowBytes, copySrc.map((t) => t.ptr), copyDst.map((t) => t.ptr));
        results[L.name]!.push(row);
        process.stderr.write(`\rbench: ${L.name} n=${n}        `);
      }
      process.stderr.write("\n");
    } finally {
      scratch.free();
      for (const t of [...copySrc, ...copyDst]) t.free();
    }
  }

  const progress = (what: string) => (n: number) => process.stderr.write(`\rbench: ${what} n=${n}        `);
  const pick = (all: number[]) => (values.quick ? all.filter((n) => n === 128 || n === 16384) : all);
  const fp8 = parts.has("fp8") ? measureFp8(stream, pick(FUSED_NS), (what, n) => progress(what)(n)) : null;
  const pdl = parts.has("pdl") ? measurePdl(stream, ref, pick(PDL_NS), progress("pdl")) : null;
  const reserved = parts.has("reserved") ? measureReservedSlot(stream, RESERVED_NS, progress("reservedSlot")) : null;
  if (fp8 || pdl || reserved) process.stderr.write("\n");
  const host = parts.has("core") ? measureHost(stream) : null;
  stream.destroy();
  const tuner = parts.has("core") ? measureTuner(tmaOk) : null;

  const report = {
    gpu: info.name,
    computeCapability: info.computeCapability,
    smCount: info.smCount,
    driverVersion: info.driverVersion,
    runtimeVersion: info.runtimeVersion,
    libraryBuildId: lib.buildId,
    date: new Date().toISOString(),
    method: `${LAYERS} layers per CUDA graph, replayed, CUDA events, best of 5; int64 random unique loc; 128 Ki-row cache per layer`,
    layouts: results,
    host,
    tuner,
    fp8,
    pdl,
    reserved,
  };
  mkdirSync(values.out!, { recursive: true });
  const stem = join(values.out!, info.name.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, ""));
  // A partial run goes to its own file, so it never replaces a full run's results.
  const suffix = parts.size === PARTS.length ? "" : `-${[...parts].join("-")}`;
  writeFileSync(`${stem}${suffix}.json`, JSON.stringify(report, null, 2) + "\n");
  for (const [layout, rows] of Object.entries(results)) {
    writeFileSync(`${stem}-${layout.split(" ")[0]}.svg`, plot(`${info.name}: ${layout}, µs per call (8-layer graph)`, rows));
  }
  printReport(info.name, report.layouts, host, tuner);
  if (fp8) printFp8(fp8);
  if (pdl) printPdl(pdl);
  if (reserved) printReserved(reserved);
  console.log(`bench: wrote ${stem}${suffix}.json and ${Object.keys(results).length} SVG plot(s)`);
  return 0;
}

function measureN(n: number, s: Scratch, stream: Stream, tmaOk: boolean, ref: ReturnType<typeof openBenchLibrary>,
  elemBytes: number, rowBytes: number, copySrc: number[], copyDst: number[]): Row {
  const time = (launch: (layer: number) => void, expectUs = 1 + n * rowBytes * 2 / 2.5e6) =>
    timeGraphPerCall(stream, LAYERS, launch, { expectUs }).us;
  const write = (options?: { path?: Path; warps?: Warps; rowsPerWarp?: RowsPerWarp; pdl?: boolean }) => (layer: number) => {
    const v = s.views(layer, n);
    setMlaKvBuffer(v.cache, v.loc, v.kNope, v.kRope, { stream, ...options });
  };
  // Forced paths without PDL, so they compare with "auto" (also without) kernel for kernel.
  const bestOf = (path: Path) => {
    let best = { us: Infinity, config: "", options: { path, warps: 1 as Warps, rowsPerWarp: 1 as RowsPerWarp, pdl: false } };
    for (const warps of [1, 2, 4, 8, 16] as Warps[])
      for (const rowsPerWarp of [1, 2, 4] as RowsPerWarp[]) {
        const options = { path, warps, rowsPerWarp, pdl: false };
        const us = time(write(options));
        if (us < best.us) best = { us, config: cfgName({ warps, rowsPerWarp }), options };
      }
    return best;
  };
  const vector = bestOf("vector");
  const tma = tmaOk ? bestOf("tma") : null;
  // One eager call first, as an engine makes before it captures: a capture never tunes, so
  // without it "auto" would time the built-in rule on a GPU with no stored profile.
  write()(0);
  stream.synchronize();
  // The GPU's own pace drifts by several % over a run, so auto and the two forced winners are
  // timed again side by side, three rounds, each keeping its best: the ratios compare choices.
  let auto = Infinity, autoPdl = Infinity;
  for (let round = 0; round < 3; ++round) {
    auto = Math.min(auto, time(write({ pdl: false })));
    autoPdl = Math.min(autoPdl, time(write({ pdl: true })));
    vector.us = Math.min(vector.us, time(write(vector.options)));
    if (tma) tma.us = Math.min(tma.us, time(write(tma.options)));
  }
  const memcpy = time((layer) => check(native().mla_kv_memcpy_dtod(0, copyDst[layer]!, copySrc[layer]!, n * rowBytes, stream.handle), "memcpy"));
  const empty = time(() => ref.empty(stream.handle), 1);
  const baseline = time((layer) => {
    const v = s.views(layer, n);
    ref.baseline(stream.handle, elemBytes, v.cache.ptr, rowBytes, v.loc.ptr, n, v.kNope.ptr, v.kNope.strides[0]! * elemBytes,
      (v.kNope.shape[1]!) * elemBytes, v.kRope.ptr, v.kRope.strides[0]! * elemBytes, v.kRope.shape[1]! * elemBytes);
  });
  return { n, auto, autoPdl, vector: vector.us, vectorConfig: vector.config, tma: tma?.us ?? null, tmaConfig: tma?.config ?? null, memcpy, empty, baseline };
}

/**
 * Host cost per call: setMlaKvBuffer from TypeScript (tinybench) against the C loop of the same C
 * call (bench/host_loop.c). Both issue batches of 256 calls at n = 1 and time only the issuing; the
 * stream drains between batches, untimed, so the launch queue never fills and GPU time stays out.
 */
function measureHost(stream: Stream) {
  const BATCH = 256;
  using cache = allocTensor("bf16", [1 << 16, 576]);
  using kNope = allocTensor("bf16", [1, 512]);
  using kRope = allocTensor("bf16", [1, 64]);
  using loc = allocTensor("i64", [1]);
  check(native().mla_kv_memset(0, loc.ptr, 0, 8, 0), "memset");
  const options = { stream, path: "vector" as const, warps: 4 as Warps, rowsPerWarp: 1 as RowsPerWarp };
  // Two TypeScript figures: the public call, and the bare bun:ffi call with its arguments already
  // computed. Their difference is the TypeScript layer's own work; the bare call against the C
  // loop is what crossing bun:ffi costs.
  const lib = native();
  const bench = new Bench({ time: 1000, warmupTime: 200 });
  const drain = { afterEach: () => stream.synchronize() };
  bench.add("setMlaKvBuffer", () => {
    for (let i = 0; i < BATCH; ++i) setMlaKvBuffer(cache, loc, kNope, kRope, options);
  }, drain);
  bench.add("bare bun:ffi call", () => {
    for (let i = 0; i < BATCH; ++i) {
      lib.mla_kv_set_kv_buffer(0, stream.handle, cache.ptr, 1 << 16, 1152, loc.ptr, 8, 1, kNope.ptr, 1024, 1024, kRope.ptr, 128, 128, -1, 1, 4, 1, 0);
    }
  }, drain);
  bench.runSync();
  const usPerCall = (task: (typeof bench.tasks)[number]) => {
    const result = task.result as { latency?: { mean: number; p50?: number } };
    return ((result.latency?.p50 ?? result.latency?.mean ?? NaN) * 1000) / BATCH;
  };
  const tsUsPerCall = usPerCall(bench.tasks[0]!);
  const ffiUsPerCall = usPerCall(bench.tasks[1]!);
  const proc = Bun.spawnSync([join(PACKAGE_ROOT, "build", "host_loop"), "200000", "1", "1", "4", "1"]);
  const text = proc.stdout.toString();
  const cCallsPerSecond = Number(/calls_per_second ([0-9.]+)/.exec(text)?.[1] ?? NaN);
  if (!Number.isFinite(cCallsPerSecond)) console.error(`bench: host_loop failed: ${text}${proc.stderr.toString()}`);
  const cUsPerCall = 1e6 / cCallsPerSecond;
  return {
    tsUsPerCall,
    ffiUsPerCall,
    cUsPerCall,
    tsCallsPerSecond: 1e6 / tsUsPerCall,
    cCallsPerSecond,
    overhead: tsUsPerCall / cUsPerCall,
  };
}

/**
 * The tuner against an exhaustive sweep, for bf16 512+64 with int64 loc: both tune in this
 * process, then at every bucket the two chosen configurations are timed again, alternately, three
 * times each (best kept), so the ratio compares choices rather than two runs' noise.
 */
function measureTuner(tmaAllowed: boolean) {
  const measurer = createMeasurer(0, { nopeBytes: 1024, ropeBytes: 128, locBytes: 8 });
  try {
    const t0 = performance.now();
    const search = tuneLayoutWithStats({ measure: measurer.measure, tmaAllowed, method: "search" });
    const t1 = performance.now();
    const exhaustive = tuneLayoutWithStats({ measure: measurer.measure, tmaAllowed, method: "exhaustive" });
    const t2 = performance.now();
    const rows = search.profile.buckets.map((b, i) => {
      const e = exhaustive.profile.buckets[i]!;
      let searchUs = Infinity, exhaustiveUs = Infinity;
      for (let k = 0; k < 3; ++k) {
        searchUs = Math.min(searchUs, measurer.measure(b.best, b.n));
        exhaustiveUs = Math.min(exhaustiveUs, measurer.measure(e.best, b.n));
      }
      return { n: b.n, search: `${b.best.path} ${cfgName(b.best)}`, exhaustive: `${e.best.path} ${cfgName(e.best)}`, searchUs, exhaustiveUs, ratio: searchUs / exhaustiveUs };
    });
    return {
      layout: "bf16 512+64, i64 loc",
      searchMs: t1 - t0,
      searchMeasurements: search.stats.measurements,
      exhaustiveMs: t2 - t1,
      exhaustiveMeasurements: exhaustive.stats.measurements,
      worstRatio: Math.max(...rows.map((r) => r.ratio)),
      rows,
    };
  } finally {
    measurer.free();
  }
}

function plot(title: string, rows: Row[]): string {
  const series = [
    { name: "auto", points: rows.map((r) => [r.n, r.auto] as [number, number]) },
    { name: "auto + PDL", points: rows.map((r) => [r.n, r.autoPdl] as [number, number]) },
    { name: "vector (best config)", points: rows.map((r) => [r.n, r.vector] as [number, number]) },
    ...(rows[0]?.tma != null ? [{ name: "TMA (best config)", points: rows.map((r) => [r.n, r.tma!] as [number, number]) }] : []),
    { name: "contiguous copy (floor)", points: rows.map((r) => [r.n, r.memcpy] as [number, number]), dashed: true },
    { name: "empty kernel", points: rows.map((r) => [r.n, r.empty] as [number, number]), dashed: true },
    { name: "baseline design", points: rows.map((r) => [r.n, r.baseline] as [number, number]) },
  ];
  return renderLinePlot({ title, xLabel: "rows per call (n)", yLabel: "µs per call", logX: true, logY: true, series });
}

const f = (x: number | null, d = 2) => (x == null ? "-" : x.toFixed(d));
const table = (header: string[], rows: string[][]) => {
  console.log(header.map((h) => h.padStart(11)).join(" "));
  for (const r of rows) console.log(r.map((c) => c.padStart(11)).join(" "));
};

function printFp8(rows: Fp8Row[]): void {
  console.log("\nquantize-on-write from bf16, C ABI, built-in launch rule (µs per call; unfused = quantize into a contiguous buffer, then scatter, same graph; bf16 = the plain write of the same rows)");
  table(
    ["format", "n", "bf16 write", "fused", "unfused", "x unfused", "/ bf16"],
    rows.map((r) => [r.format, String(r.n), f(r.bf16), f(r.fused), f(r.unfused), f(r.unfused / r.fused), f(r.fused / r.bf16, 3)]),
  );
}

function printPdl(rows: PdlRow[]): void {
  console.log("\nproducer kernel, then the bf16 write, per layer (µs per layer; the write's share = pair - producer)");
  table(
    ["n", "producer", "+ write", "+ write PDL", "saving", "share", "share PDL"],
    rows.map((r) => [
      String(r.n), f(r.producer), f(r.producerThenWrite), f(r.producerThenWritePdl), f(r.producerThenWrite - r.producerThenWritePdl),
      f(r.producerThenWrite - r.producer), f(r.producerThenWritePdl - r.producer),
    ]),
  );
}

function printReserved(rows: ReservedSlotRow[]): void {
  console.log("\nreservedSlot (bf16 write, µs per call, best of 6 side by side)");
  table(["n", "without", "with", "with/without"], rows.map((r) => [String(r.n), f(r.without), f(r.with), f(r.with / r.without, 3)]));
}

function printReport(gpuName: string, layouts: Record<string, Row[]>, host: ReturnType<typeof measureHost> | null, tuner: ReturnType<typeof measureTuner> | null): void {
  for (const [name, rows] of Object.entries(layouts)) {
    const rowBytes = name.startsWith("bf16") ? 1152 : 656;
    console.log(`\n${name} (µs per call; GB/s counts bytes read + written)`);
    console.log(["n", "auto", "auto+PDL", "vector", "cfg", "tma", "cfg", "memcpy", "empty", "baseline", "auto GB/s", "x copy", "x baseline", "auto/best"].map((h, i) => (i === 4 || i === 6 ? h.padEnd(6) : h.padStart(9))).join(" "));
    for (const r of rows) {
      const best = Math.min(r.vector, r.tma ?? Infinity);
      console.log([
        String(r.n).padStart(9), f(r.auto).padStart(9), f(r.autoPdl).padStart(9), f(r.vector).padStart(9), r.vectorConfig.padEnd(6), f(r.tma).padStart(9),
        (r.tmaConfig ?? "-").padEnd(6), f(r.memcpy).padStart(9), f(r.empty).padStart(9), f(r.baseline).padStart(9),
        f((2 * r.n * rowBytes) / (r.auto * 1e3), 0).padStart(9), f(r.auto / r.memcpy).padStart(9), f(r.baseline / r.auto).padStart(9),
        f(r.auto / best, 3).padStart(9),
      ].join(" "));
    }
  }
  if (host === null || tuner === null) return;
  console.log(`\nhost, µs per call issued (n = 1, batches of 256, queue never full): setMlaKvBuffer ${f(host.tsUsPerCall, 3)}, bare bun:ffi call ${f(host.ffiUsPerCall, 3)}, C loop ${f(host.cUsPerCall, 3)}; overhead ${f(host.overhead, 2)}x (TypeScript layer ${f(host.tsUsPerCall - host.ffiUsPerCall, 3)} µs, bun:ffi crossing ${f(host.ffiUsPerCall - host.cUsPerCall, 3)} µs)`);
  console.log(`\ntuner (${tuner.layout}): search ${f(tuner.searchMs / 1000, 2)} s / ${tuner.searchMeasurements} timings, exhaustive ${f(tuner.exhaustiveMs / 1000, 2)} s / ${tuner.exhaustiveMeasurements} timings; chosen configs re-timed side by side:`);
  for (const r of tuner.rows) {
    console.log(`  n=${String(r.n).padStart(5)}  search ${r.search.padEnd(12)} ${f(r.searchUs).padStart(7)} µs   exhaustive ${r.exhaustive.padEnd(12)} ${f(r.exhaustiveUs).padStart(7)} µs   ${f(r.ratio, 3)}`);
  }
  console.log(`\ntargets (set for an H100; measured in this run on ${gpuName}):`);
  const bf = layouts["bf16 512+64"] ?? [];
  const u8 = layouts["u8 528+128"] ?? [];
  const line = (ok: boolean, text: string) => console.log(`  ${ok ? "met " : "MISS"}  ${text}`);
  for (const [name, rows] of [["bf16", bf], ["u8", u8]] as const) {
    const big = rows.filter((r) => r.n >= 8192);
    if (big.length) {
      const worst = Math.max(...big.map((r) => r.auto / r.memcpy));
      line(worst <= 1.03, `${name}: auto <= 1.03 x contiguous copy at n >= 8192 (worst ${worst.toFixed(3)})`);
    }
  }
  const small = bf.filter((r) => r.n <= 128);
  if (small.length) {
    const worst = Math.max(...small.map((r) => r.auto - r.empty));
    line(worst <= 0.15, `bf16: auto within 0.15 µs of the empty kernel at n <= 128 (worst +${worst.toFixed(2)} µs)`);
    const worstPdl = Math.max(...small.map((r) => r.autoPdl - r.empty));
    line(worstPdl <= 0.15, `bf16: auto + PDL within 0.15 µs of the empty kernel at n <= 128 (worst +${worstPdl.toFixed(2)} µs)`);
  }
  for (const [name, rows] of [["bf16", bf], ["u8", u8]] as const) {
    if (!rows.length) continue;
    const worst = Math.max(...rows.map((r) => r.auto / Math.min(r.vector, r.tma ?? Infinity)));
    line(worst <= 1.02, `${name}: auto within 2 % of the better forced path at every n (worst ${worst.toFixed(3)})`);
  }
  const at16k = bf.find((r) => r.n === 16384);
  if (at16k) line(at16k.baseline / at16k.auto >= 3, `bf16: >= 3 x faster than the baseline design at n = 16384 (${(at16k.baseline / at16k.auto).toFixed(2)} x)`);
  line(host.overhead <= 1.3, `host: TypeScript overhead <= 1.3 x the C loop (${host.overhead.toFixed(2)} x)`);
  line(tuner.searchMs <= 1000, `tuner: one layout tuned within 1 s (${(tuner.searchMs / 1000).toFixed(2)} s)`);
  line(tuner.worstRatio <= 1.03, `tuner: search's choice within 3 % of the exhaustive sweep's at every n (worst ${tuner.worstRatio.toFixed(3)})`);
}

if (import.meta.main) process.exit(main());
