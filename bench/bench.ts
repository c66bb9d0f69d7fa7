#!/usr/bin/env bun
/**
 * `bun run bench`: mla-kv's default write side by side with the kernels engines already have
 * (bench/peers.cuh), in one run, timed the way an engine runs them (8 layers per CUDA graph,
 * replayed, CUDA events, variants re-timed in interleaved rounds, best kept), with and without
 * programmatic dependent launch; then the host-side cost of the TypeScript layer against a C loop
 * of the same call, and the tuner against an exhaustive sweep.
 *
 *   bun run bench [--layout bf16|u8] [--part core|fp8|pdl|reserved] [--quick] [--out DIR]
 *
 * The figure that matters is `ratio_to_best_peer`: the default write over the fastest peer with
 * the same PDL setting (`ratio_to_best_peer_no_pdl` with PDL off). Peers:
 *   plain        the plain warp copy, signalling its dependents after its stores
 *   plain-early  the same, signalling them first thing
 *   seed-row     the seed's improved row design (one CTA a row)
 *   block-chunk  the 1D design engines started from (one CTA per 128-element chunk of a row)
 * Floors: an empty kernel (with and without PDL) and a contiguous device copy of the same bytes.
 *
 * Parts (all by default): core, the above with the host loop and the tuner; fp8, every quantizing
 * format against its unfused sequence and the bf16 write (bench/fused_fp8.ts); pdl, a producer
 * kernel then the write; reserved, the cost of a reserved slot (bench/fused.ts).
 *
 * Writes bench/results/<gpu>.json and one SVG per layout; prints the tables last.
 * Exit status: 0 done, 3 no usable GPU here (the message says why), 1 any other failure.
 */
import { Bench } from "tinybench";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { allocTensor, deviceInfo, gpuProblem, libraryInfo, setMlaKvBuffer, Stream, type Warps } from "../mod.ts";
import { check, native } from "../ffi/native.ts";
import { startFailure } from "../ffi/diagnose.ts";
import { PACKAGE_ROOT } from "../ffi/package_root.ts";
import { allocScratch, type Scratch } from "../autotune/scratch.ts";
import { EXIT, exitStatusHelp, parseFlags, UsageError } from "../cli/usage.ts";
import { createMeasurer } from "../autotune/measure.ts";
import { tuneOnDevice } from "../autotune/tune.ts";
import { planSetMlaKvBuffer } from "../src/layout.ts";
import { copyLayout } from "../src/layout_key.ts";
import { chooseLaunchConfig } from "../src/set_mla_kv_buffer.ts";
import { renderLinePlot } from "../cli/svg_plot.ts";
import { openBenchLibrary, type PeerWrite } from "./bench_library.ts";
import { measurePdl, measureReservedSlot, type PdlRow, type ReservedSlotRow } from "./fused.ts";
import { measureFp8, type Fp8Row } from "./fused_fp8.ts";
import { LAYERS, ROUNDS, sideBySide, timer } from "./timing.ts";

const NS = [1, 8, 32, 128, 512, 1024, 2048, 4096, 8192, 16384, 32768];
const QUICK_NS = [1, 128, 4096, 16384];
const LAYOUTS = {
  bf16: { name: "bf16 512+64", elemBytes: 2, nopeBytes: 1024, ropeBytes: 128 },
  u8: { name: "u8 528+128", elemBytes: 1, nopeBytes: 528, ropeBytes: 128 },
};
type LayoutName = keyof typeof LAYOUTS;
const PARTS = ["core", "fp8", "pdl", "reserved"] as const;
type Part = (typeof PARTS)[number];
const FUSED_NS = [1, 32, 128, 1024, 4096, 16384, 32768];
const PDL_NS = [1, 8, 128, 1024, 4096, 16384];
const RESERVED_NS = [128, 16384];
const PEERS = ["plain", "plain-early", "seed-row", "block-chunk"] as const;
type Peer = (typeof PEERS)[number];

/** One n of one layout: µs per call of everything timed, and the ratios. */
interface Row {
  n: number;
  /** mla-kv's default write (automatic dispatch, PDL on). */
  default: number;
  /** The same with PDL off. */
  defaultNoPdl: number;
  peers: Record<Peer, number>;
  peersNoPdl: Record<Peer, number>;
  bestPeer: Peer;
  bestPeerNoPdl: Peer;
  ratio_to_best_peer: number;
  ratio_to_best_peer_no_pdl: number;
  empty: number;
  emptyNoPdl: number;
  memcpy: number;
  /** The launch the default write took at this n. */
  chosen: string;
}

const HELP = `Usage: bun run bench [--layout bf16|u8]... [--part core|fp8|pdl|reserved]... [--quick] [--out DIR]

Times mla-kv's default write on GPU 0 beside the kernels engines already have (bench/peers.cuh),
with and without PDL, and the fp8, PDL and reserved-slot parts (see the README's Benchmark
section); writes the results and plots to DIR (default bench/results). Needs \`bun run build --bench\`.

${exitStatusHelp("the library did not load")}
`;

const OPTIONS = {
  layout: { type: "string", multiple: true },
  part: { type: "string", multiple: true },
  quick: { type: "boolean", default: false },
  out: { type: "string", default: join(PACKAGE_ROOT, "bench", "results") },
  help: { type: "boolean", short: "h", default: false },
} as const;

function main(): number {
  let values: { layout?: string[]; part?: string[]; quick: boolean; out: string; help: boolean };
  try {
    values = parseFlags(process.argv.slice(2), OPTIONS);
    for (const p of values.part ?? []) if (!(PARTS as readonly string[]).includes(p)) throw new UsageError(`unknown --part ${p} (${PARTS.join(", ")})`);
    for (const l of values.layout ?? []) if (!(l in LAYOUTS)) throw new UsageError(`unknown --layout ${l} (bf16 or u8)`);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`bench: ${error.message}; see --help.`);
    return EXIT.usage;
  }
  if (values.help) {
    process.stdout.write(HELP);
    return EXIT.ok;
  }
  const parts = new Set((values.part ?? [...PARTS]) as Part[]);
  const layouts = (values.layout ?? ["bf16", "u8"]) as LayoutName[];

  const problem = gpuProblem(0);
  if (problem !== null) {
    const { line, exitCode } = startFailure("bench", problem);
    console.error(line);
    return exitCode;
  }
  const info = deviceInfo(0);
  const lib = libraryInfo();
  const ref = openBenchLibrary();
  console.log(`bench: ${info.name}, sm_${info.computeCapability.join("")}, ${info.smCount} SMs, L2 ${(info.l2Bytes / 2 ** 20).toFixed(0)} MB; library ${lib.buildId}`);

  const ns = values.quick ? QUICK_NS : NS;
  const stream = Stream.create(0);
  const results: Record<string, Row[]> = {};
  for (const name of parts.has("core") ? layouts : []) {
    const L = LAYOUTS[name];
    const scratch = allocScratch(copyLayout(L.nopeBytes, L.ropeBytes, 8));
    const rowBytes = L.nopeBytes + L.ropeBytes;
    const maxN = Math.min(ns[ns.length - 1]!, scratch.maxN);
    const copySrc = Array.from({ length: LAYERS }, () => allocTensor("u8", [maxN * rowBytes]));
    const copyDst = Array.from({ length: LAYERS }, () => allocTensor("u8", [maxN * rowBytes]));
    try {
      results[L.name] = [];
      // One discarded pass at the first n: the first timings of a run meet the GPU's clocks in
      // another state than the rest (every variant, the empty kernel too, 10-20 % faster), and
      // the variants do not gain alike, so the first row's ratios would measure the clock.
      const srcPtrs = copySrc.map((t) => t.ptr), dstPtrs = copyDst.map((t) => t.ptr);
      const measure = (n: number) => measureN(n, scratch, stream, ref, L.elemBytes, L.nopeBytes, rowBytes, srcPtrs, dstPtrs);
      measure(ns[0]!);
      for (const n of ns.filter((n) => n <= maxN)) {
        results[L.name]!.push(measure(n));
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
  const tuner = parts.has("core") ? measureTuner() : null;

  const report = {
    gpu: info.name,
    computeCapability: info.computeCapability,
    smCount: info.smCount,
    driverVersion: info.driverVersion,
    runtimeVersion: info.runtimeVersion,
    libraryBuildId: lib.buildId,
    date: new Date().toISOString(),
    method: `${LAYERS} layers per CUDA graph, replayed, CUDA events, best of 5 per timing and of ${ROUNDS} interleaved rounds; int64 random unique loc; caches from the scratch set (autotune/scratch.ts)`,
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
  if (fp8) printFp8(fp8);
  if (pdl) printPdl(pdl);
  if (reserved) printReserved(reserved);
  if (host && tuner) printHostAndTuner(host, tuner);
  printCore(results);
  console.log(`bench: wrote ${stem}${suffix}.json and ${Object.keys(results).length} SVG plot(s)`);
  return 0;
}

function measureN(n: number, s: Scratch, stream: Stream, ref: ReturnType<typeof openBenchLibrary>,
  elemBytes: number, nopeBytes: number, rowBytes: number, copySrc: number[], copyDst: number[]): Row {
  const time = timer(stream, n, 2 * rowBytes);
  const views = Array.from({ length: LAYERS }, (_, layer) => s.views(layer, n));
  const peerWrites: PeerWrite[] = views.map((v) => ({
    rowBytes, elemBytes, cache: v.cache.ptr, cacheRowStride: rowBytes, loc: v.loc.ptr, n,
    nope: v.kNope.ptr, nopeRowStride: v.kNope.strides[0]!, rope: v.kRope!.ptr, ropeRowStride: v.kRope!.strides[0]!, nopeBytes,
  }));
  const write = (pdl: boolean) => (layer: number) => {
    const v = views[layer]!;
    setMlaKvBuffer(v.cache, v.loc, v.kNope, v.kRope, { stream, pdl });
  };
  const peer = (name: Peer, pdl: boolean) => (layer: number) => {
    const w = peerWrites[layer]!;
    if (name === "seed-row") ref.seedRow(stream.handle, pdl, w);
    else if (name === "block-chunk") ref.blockPerChunk(stream.handle, pdl, w);
    else ref.plain(stream.handle, pdl, name === "plain-early", w);
  };
  // One eager call first, as an engine makes before it captures: a capture never tunes, so
  // without it the default write would be timed on the built-in rule on a GPU with no profile.
  write(true)(0);
  stream.synchronize();
  const empty = timer(stream, 0, 0);
  const peerVariants = Object.fromEntries(PEERS.flatMap((p) => [
    [`${p}:pdl`, time(peer(p, true))],
    [`${p}:off`, time(peer(p, false))],
  ])) as Record<`${Peer}:${"pdl" | "off"}`, () => number>;
  // The GPU's own pace drifts over a run, so every variant is timed in each round, interleaved,
  // and keeps its best: the ratios then compare designs, not moments.
  const best = sideBySide({
    default: time(write(true)),
    defaultNoPdl: time(write(false)),
    empty: empty(() => ref.empty(stream.handle, true)),
    emptyNoPdl: empty(() => ref.empty(stream.handle, false)),
    memcpy: time((layer) => check(native().mla_kv_memcpy_dtod(0, copyDst[layer]!, copySrc[layer]!, n * rowBytes, stream.handle), "memcpy")),
    ...peerVariants,
  });
  const peers = Object.fromEntries(PEERS.map((p) => [p, best[`${p}:pdl`]])) as Record<Peer, number>;
  const peersNoPdl = Object.fromEntries(PEERS.map((p) => [p, best[`${p}:off`]])) as Record<Peer, number>;
  const fastest = (r: Record<Peer, number>) => PEERS.reduce((a, b) => (r[b] < r[a] ? b : a));
  const bestPeer = fastest(peers), bestPeerNoPdl = fastest(peersNoPdl);
  const chosen = chosenLaunch(s, n, stream);
  return {
    n,
    default: best.default,
    defaultNoPdl: best.defaultNoPdl,
    peers,
    peersNoPdl,
    bestPeer,
    bestPeerNoPdl,
    ratio_to_best_peer: best.default / peers[bestPeer],
    ratio_to_best_peer_no_pdl: best.defaultNoPdl / peersNoPdl[bestPeerNoPdl],
    empty: best.empty,
    emptyNoPdl: best.emptyNoPdl,
    memcpy: best.memcpy,
    chosen,
  };
}

/** The launch dispatch makes for this write, as `path wWrR`: the write's own chooser, so one rule. */
function chosenLaunch(s: Scratch, n: number, stream: Stream): string {
  return launchName(chooseLaunchConfig(s.plan(0, n), { stream }));
}

/** A launch as `path wWrR`. */
function launchName(c: { path: string; warps: number; rowsPerWarp: number }): string {
  return `${c.path} w${c.warps}r${c.rowsPerWarp}`;
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
  const options = { stream, path: "vector" as const, warps: 4 as Warps, rowsPerWarp: 1 as const };
  const lib = native();
  const bench = new Bench({ time: 1000, warmupTime: 200 });
  const drain = { afterEach: () => stream.synchronize() };
  bench.add("setMlaKvBuffer", () => {
    for (let i = 0; i < BATCH; ++i) setMlaKvBuffer(cache, loc, kNope, kRope, options);
  }, drain);
  bench.add("bare bun:ffi call", () => {
    for (let i = 0; i < BATCH; ++i) {
      lib.mla_kv_set_kv_buffer(0, stream.handle, cache.ptr, 1 << 16, 1152, loc.ptr, 8, 1, kNope.ptr, 1024, 1024, kRope.ptr, 128, 128, -1, 1, 4, 1, 1);
    }
  }, drain);
  // Where the TypeScript layer's time goes: the plan (argument checks) and the choice, without launching.
  bench.add("plan only", () => {
    for (let i = 0; i < BATCH; ++i) planSetMlaKvBuffer(cache, loc, kNope, kRope);
  });
  bench.add("plan and choice", () => {
    for (let i = 0; i < BATCH; ++i) chooseLaunchConfig(planSetMlaKvBuffer(cache, loc, kNope, kRope), options);
  });
  bench.runSync();
  const usPerCall = (task: (typeof bench.tasks)[number]) => {
    const result = task.result as { latency?: { mean: number; p50?: number } };
    return ((result.latency?.p50 ?? result.latency?.mean ?? NaN) * 1000) / BATCH;
  };
  const tsUsPerCall = usPerCall(bench.tasks[0]!);
  const ffiUsPerCall = usPerCall(bench.tasks[1]!);
  const planUsPerCall = usPerCall(bench.tasks[2]!);
  const choiceUsPerCall = usPerCall(bench.tasks[3]!);
  const proc = Bun.spawnSync([join(PACKAGE_ROOT, "build", "host_loop"), "200000", "1", "1", "4", "1"]);
  const text = proc.stdout.toString();
  const cCallsPerSecond = Number(/calls_per_second ([0-9.]+)/.exec(text)?.[1] ?? NaN);
  if (!Number.isFinite(cCallsPerSecond)) console.error(`bench: host_loop failed: ${text}${proc.stderr.toString()}`);
  const cUsPerCall = 1e6 / cCallsPerSecond;
  return { tsUsPerCall, ffiUsPerCall, cUsPerCall, planUsPerCall, choiceUsPerCall, overhead: tsUsPerCall / cUsPerCall };
}

/**
 * The tuner against an exhaustive sweep, for bf16 512+64 with int64 loc: both tune in this
 * process, then at every bucket the two chosen launches are timed again, alternately, three times
 * each (best kept), so the ratio compares choices rather than two runs' noise.
 */
function measureTuner() {
  const layout = copyLayout(1024, 128, 8);
  const measurer = createMeasurer(0, layout);
  try {
    const t0 = performance.now();
    const search = tuneOnDevice(0, layout, { method: "search", measureWith: measurer.measure });
    const t1 = performance.now();
    const exhaustive = tuneOnDevice(0, layout, { method: "exhaustive", measureWith: measurer.measure });
    const t2 = performance.now();
    const rows = search.profile.buckets.map((b, i) => {
      const s = b.ranked[0]!, e = exhaustive.profile.buckets[i]!.ranked[0]!;
      let searchUs = Infinity, exhaustiveUs = Infinity;
      for (let k = 0; k < 3; ++k) {
        searchUs = Math.min(searchUs, measurer.measure(s, b.n));
        exhaustiveUs = Math.min(exhaustiveUs, measurer.measure(e, b.n));
      }
      return { n: b.n, search: launchName(s), exhaustive: launchName(e), searchUs, exhaustiveUs, ratio: searchUs / exhaustiveUs };
    });
    return {
      layout: "bf16 512+64, i64 loc, PDL as the writes use it",
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
  const line = (name: string, f: (r: Row) => number, dashed = false) => ({ name, points: rows.map((r) => [r.n, f(r)] as [number, number]), dashed });
  const series = [
    line("mla-kv default (PDL)", (r) => r.default),
    line("mla-kv, PDL off", (r) => r.defaultNoPdl),
    ...PEERS.map((p) => line(`${p} + PDL`, (r) => r.peers[p])),
    line("contiguous copy (floor)", (r) => r.memcpy, true),
    line("empty kernel + PDL", (r) => r.empty, true),
  ];
  return renderLinePlot({ title, xLabel: "rows per call (n)", yLabel: "µs per call", logX: true, logY: true, series });
}

const f = (x: number | null | undefined, d = 2) => (x == null || !Number.isFinite(x) ? "-" : x.toFixed(d));
const table = (header: string[], rows: string[][]) => {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  console.log(header.map((h, i) => h.padStart(widths[i]!)).join("  "));
  for (const r of rows) console.log(r.map((c, i) => c.padStart(widths[i]!)).join("  "));
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
    ["n", "producer", "+ write", "+ write PDL", "saving"],
    rows.map((r) => [String(r.n), f(r.producer), f(r.producerThenWrite), f(r.producerThenWritePdl), f(r.producerThenWrite - r.producerThenWritePdl)]),
  );
}

function printReserved(rows: ReservedSlotRow[]): void {
  console.log("\nreservedSlot (bf16 write, µs per call, best of 6 side by side)");
  table(["n", "without", "with", "with/without"], rows.map((r) => [String(r.n), f(r.without), f(r.with), f(r.with / r.without, 3)]));
}

function printHostAndTuner(host: ReturnType<typeof measureHost>, tuner: ReturnType<typeof measureTuner>): void {
  console.log(`\nhost, µs per call issued (n = 1, batches of 256): setMlaKvBuffer ${f(host.tsUsPerCall, 3)}, bare bun:ffi call ${f(host.ffiUsPerCall, 3)}, C loop ${f(host.cUsPerCall, 3)}; ${f(host.overhead, 2)} x the C loop; of which the plan ${f(host.planUsPerCall, 3)} and plan + choice ${f(host.choiceUsPerCall, 3)}`);
  console.log(`tuner (${tuner.layout}): search ${f(tuner.searchMs / 1000, 2)} s / ${tuner.searchMeasurements} timings, exhaustive ${f(tuner.exhaustiveMs / 1000, 2)} s / ${tuner.exhaustiveMeasurements}; chosen launches re-timed side by side, worst ${f(tuner.worstRatio, 3)}:`);
  for (const r of tuner.rows) console.log(`  n=${String(r.n).padStart(5)}  search ${r.search.padEnd(16)} ${f(r.searchUs).padStart(7)}   exhaustive ${r.exhaustive.padEnd(16)} ${f(r.exhaustiveUs).padStart(7)}   ${f(r.ratio, 3)}`);
}

function printCore(layouts: Record<string, Row[]>): void {
  for (const [name, rows] of Object.entries(layouts)) {
    console.log(`\n${name}: µs per call; ratio = mla-kv default over the best peer with the same PDL setting`);
    table(
      ["n", "default", "best peer", "ratio", "PDL off", "best peer off", "ratio off", "empty/+PDL", "+ over empty", "memcpy", "chosen"],
      rows.map((r) => [
        String(r.n), f(r.default), `${f(r.peers[r.bestPeer])} ${r.bestPeer}`, f(r.ratio_to_best_peer, 3), f(r.defaultNoPdl),
        `${f(r.peersNoPdl[r.bestPeerNoPdl])} ${r.bestPeerNoPdl}`, f(r.ratio_to_best_peer_no_pdl, 3), `${f(r.emptyNoPdl)}/${f(r.empty)}`,
        f(r.default - r.empty), f(r.memcpy), r.chosen,
      ]),
    );
  }
}

if (import.meta.main) process.exit(main());
