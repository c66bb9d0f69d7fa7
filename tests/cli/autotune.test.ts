/**
 * `bun run autotune` with a fake GPU side: each tuner's paths and allowed launches come from the
 * real eligibility rule for the fake GPU's compute capability, its timing from a landscape of all
 * four designs (tests/autotune/fixtures/landscapes.ts), so the command's parsing, progress, tables,
 * plots and JSON run as on a GPU. The GPU side itself runs against the host fixture at the end.
 */
import { describe, expect, it } from "bun:test";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { profilePath, type Env } from "../../autotune/cache_dir.ts";
import { ProfileLookup } from "../../autotune/lookup.ts";
import { identityKey, ProfileSchema, type Choice, type GpuIdentity, type LayoutProfile } from "../../autotune/profile.ts";
import { configSpace, type MeasureFn } from "../../autotune/search.ts";
import { runAutotune, type AutotuneDeps } from "../../cli/autotune.ts";
import { autotuneHelp, parseLayoutSpec } from "../../cli/autotune_flags.ts";
import type { GpuInfo, NoGpus, Tuner } from "../../cli/autotune_gpu.ts";
import { userProfileStore } from "../../cli/autotune_store.ts";
import { pathMayRun, runnablePaths } from "../../src/eligibility.ts";
import { layoutGeometry, layoutKey, layoutRowBytes, type WriteLayout } from "../../src/layout_key.ts";
import { BUCKET_COUNT, PATHS } from "../../src/vocabulary.ts";
import { fakeLayoutProfile, h100 } from "../autotune/fixtures/fake.ts";
import { h200Designs } from "../autotune/fixtures/landscapes.ts";
import { describeRun, runCommand } from "../helpers/commands.ts";
import { hostLibrary } from "../helpers/host_library.ts";
import { describeChild, runInChild } from "../helpers/run_in_child.ts";
import { tempDirs } from "../helpers/temp_dirs.ts";

const freshDir = tempDirs("mla-kv-cli-");

const H100: GpuInfo = { index: 0, name: "NVIDIA H100 80GB HBM3", identity: h100() };
const A100: GpuInfo = {
  index: 1,
  name: "NVIDIA A100-SXM4-80GB",
  identity: h100({ gpu: { name: "NVIDIA A100-SXM4-80GB", ccMajor: 8, smCount: 108 } }),
};

/** Shared memory a block may opt into on the fake GPUs (an H100's). */
const SMEM_OPTIN = 232448;

/** The chosen-launch column of the table, from a profile's choice. */
const launchCell = (c: Choice) => (c.path === "spread" ? `spread r${c.rowsPerWarp}` : `${c.path} w${c.warps}r${c.rowsPerWarp}`);

/**
 * Three designs that each win a range by a wide margin: spread up to n = 32, specialized from 64
 * to 8192, TMA from 16384; the generic copy is 10 % behind specialized throughout. Every design's
 * best shape is 4 warps (spread: its one block), one row per warp.
 */
const threeWinners: MeasureFn = (c, n) => {
  const design = { spread: n <= 32 ? 0.8 : 1.3, specialized: 0.9, vector: 1, tma: n >= 16384 ? 0.7 : 1.2 }[c.path];
  const shape = 1 + (c.path === "spread" ? 0 : 0.05 * Math.abs(Math.log2(c.warps) - 2)) + 0.05 * Math.log2(c.rowsPerWarp);
  return (1 + n * 0.001) * design * shape;
};

class Sink {
  text = "";
  constructor(readonly isTTY = false) {}
  write(s: string): void {
    this.text += s;
  }
}

interface FakeOptions {
  gpus?: GpuInfo[] | NoGpus | (() => never);
  tty?: boolean;
  env?: Env;
  /** Profiles already stored, by identityKey + layout key. */
  stored?: Map<string, LayoutProfile>;
  /** The timing of one (device, layout); default the H200 landscape, scaled by the row size. */
  measure?: (device: number, layout: WriteLayout) => MeasureFn;
  /** The last bucket the tuners' scratch allows; default every bucket. */
  maxBucket?: number;
  /** Making the tuner throws this (scratch memory that cannot be had). */
  tunerError?: Error;
  failSave?: (layoutKey: string) => boolean;
}

function fake(opts: FakeOptions = {}) {
  const stdout = new Sink();
  const stderr = new Sink(opts.tty ?? false);
  const stored = opts.stored ?? new Map<string, LayoutProfile>();
  const tuners: Array<{ device: number; layout: WriteLayout }> = [];
  const saves: string[] = [];
  let gpuCalls = 0;
  let t = Date.UTC(2026, 0, 1);
  const gpuList = () => {
    const g = opts.gpus ?? [H100];
    return typeof g === "function" ? g() : g;
  };
  const deps: AutotuneDeps = {
    gpus: () => {
      gpuCalls++;
      return gpuList();
    },
    tunerFor: (device, layout): Tuner => {
      tuners.push({ device, layout });
      if (opts.tunerError) throw opts.tunerError;
      const gpu = (gpuList() as GpuInfo[]).find((g) => g.index === device)!;
      const facts = { ccMajor: gpu.identity.gpu.ccMajor, smemPerBlockOptin: SMEM_OPTIN };
      const geometry = layoutGeometry(layout);
      // Smaller rows are faster, so layouts are told apart by their numbers.
      const scale = layoutRowBytes(layout) / 1152;
      return {
        measure: opts.measure?.(device, layout) ?? ((c, n) => h200Designs.truth(c, n) * scale),
        paths: runnablePaths(PATHS, facts, geometry),
        allowed: (c) => pathMayRun(c, facts, geometry),
        pdl: facts.ccMajor >= 9,
        ...(opts.maxBucket === undefined ? {} : { maxBucket: opts.maxBucket }),
      };
    },
    store: {
      save(identity: GpuIdentity, key: string, layout: LayoutProfile) {
        if (opts.failSave?.(key)) throw new Error("EROFS: read-only file system");
        stored.set(`${identityKey(identity)}|${key}`, layout);
        saves.push(key);
        return `/fake/cache/${identityKey(identity)}.json`;
      },
      existing(identity: GpuIdentity, key: string) {
        return stored.get(`${identityKey(identity)}|${key}`) ?? null;
      },
    },
    stdout,
    stderr,
    env: opts.env ?? {},
    now: () => (t += 3),
  };
  return {
    deps,
    stdout,
    stderr,
    stored,
    saves,
    tuners,
    tunedKeys: () => tuners.map((x) => layoutKey(x.layout)),
    run: (...argv: string[]) => runAutotune(argv, deps),
    gpuCalls: () => gpuCalls,
  };
}

/** The quarter lines of a progress log on a file: ["25", "50", ...]. */
const quarters = (lines: string[]) => lines.map((l) => /^autotune: (\d+)% \(/.exec(l)?.[1]);

const FLAGS = ["--layout", "--loc", "--device", "--exhaustive", "--json", "--plot", "--force", "--quiet", "--help"];

const DEFAULT_KEYS_I32 = [
  "1024+128/i32",
  "528+128/i32",
  "fp8_e4m3<bf16:512+64/i32",
  "fp8_ds_mla.pow2<bf16:512+64/i32",
  "fp8_ds_v4.pow2<bf16:448+64@p64/i32",
  "fp8_indexer.amax<bf16:128+0@p64/i32",
];

describe("--help", () => {
  it("exits 0 and lists every flag, its default, the environment variables and examples", () => {
    for (const flag of ["--help", "-h"]) {
      const f = fake();
      expect(f.run(flag)).toBe(0);
      for (const name of FLAGS) expect(f.stdout.text).toContain(name);
      for (const v of ["MLA_KV_CACHE_DIR", "MLA_KV_AUTOTUNE", "MLA_KV_QUIET"]) expect(f.stdout.text).toContain(v);
      expect(f.stdout.text).toContain(
        "Default: bf16:512+64, fp16:512+64, u8:528+128, bf16:512+64:fp8_e4m3, bf16:512+64:fp8_ds_mla, bf16:448+64:fp8_ds_v4@64, bf16:128+0:fp8_indexer@64.",
      );
      expect(f.stdout.text).toContain("Default: both");
      expect(f.stdout.text).toContain("one line per kernel design and\n                     the chosen launch dashed");
      expect(f.stdout.text).toContain("Examples:");
      expect(f.stdout.text).toContain("Exit status: 0 done; 1 the library did not load, or a tune, save or plot failed; 2 bad flags; 3 no usable NVIDIA GPU here.");
      expect(f.stdout.text).toBe(autotuneHelp());
      expect(f.stdout.text).toStartWith("Usage: bun run autotune [flags]\n");
      expect(f.stderr.text).toBe("");
      expect(f.gpuCalls()).toBe(0);
    }
  });

  it("names the command as the user ran it", () => {
    const f = fake();
    f.deps.program = "mla-kv autotune";
    expect(f.run("--help")).toBe(0);
    expect(f.stdout.text).toStartWith("Usage: mla-kv autotune [flags]\n");
    expect(f.stdout.text).toContain("  mla-kv autotune --layout bf16:448+64:fp8_ds_v4@64 --loc i32\n");
  });
});

describe("bad flags", () => {
  const cases: Array<[string[], RegExp]> = [
    [["--frobnicate"], /^autotune: unknown flag --frobnicate; see --help\.\n$/],
    [["-x"], /^autotune: unknown flag -x; see --help\.\n$/],
    [["tune"], /^autotune: unexpected argument tune \(this command takes only flags\); see --help\.\n$/],
    [["--layout"], /^autotune: --layout needs a value; see --help\.\n$/],
    [["--json=yes"], /^autotune: --json takes no value; see --help\.\n$/],
    [["--loc", "i16"], /^autotune: --loc "i16" is not i32, i64 or both; see --help\.\n$/],
    [["--device", "gpu0"], /^autotune: --device "gpu0" is not a device index like 0; see --help\.\n$/],
    [["--plot", "out.png"], /^autotune: --plot "out\.png" must name a file ending in \.svg; see --help\.\n$/],
    [["--plot", "out.svg.png"], /^autotune: --plot "out\.svg\.png" must name a file ending in \.svg; see --help\.\n$/],
    [["--json", "--json"], /^autotune: --json was given 2 times \(give it once\); see --help\.\n$/],
    [["--loc", "i32", "--loc", "i64"], /^autotune: --loc was given 2 times \(give it once\); see --help\.\n$/],
  ];
  for (const [argv, message] of cases) {
    it(`exits 2 with one sentence for ${argv.join(" ")}`, () => {
      const f = fake();
      expect(f.run(...argv)).toBe(2);
      expect(f.stderr.text).toMatch(message);
      expect(f.stderr.text.split("\n").length).toBe(2);
      expect(f.stdout.text).toBe("");
      expect(f.gpuCalls()).toBe(0);
    });
  }

  const NOT_A_SPEC = /is not dtype:nope\+rope\[:format\[\.rule\]\[@pageSize\]\], e\.g\. bf16:512\+64 or bf16:448\+64:fp8_ds_v4@64/;
  const badSpecs: Array<[string, RegExp]> = [
    ["bf16", NOT_A_SPEC],
    ["bf16:512", NOT_A_SPEC],
    ["bf16:512-64", NOT_A_SPEC],
    ["", NOT_A_SPEC],
    ["bf16:512+64@64", NOT_A_SPEC],
    ["bf16:512+64:1", /format 1 is not one of fp8_e4m3, fp8_e5m2, fp8_ds_mla, fp8_ds_v4, fp8_indexer/],
    ["u8:512+64:fp8_e4m3", /a fp8_e4m3 write quantizes bf16 or fp16 sources, not u8/],
    ["bf16:512+63:fp8_e4m3", /the rope part must be a multiple of 2 elements up to 128, got 63/],
    ["bf16:512+128:fp8_ds_mla", /the fp8_ds_mla rope part has 64 elements, got 128/],
    ["bf16:512+64:fp8_ds_mla.ue8m0", /fp8_ds_mla takes scale rule pow2 or amax, not ue8m0/],
    ["bf16:512+64:fp8_e4m3.pow2", /fp8_e4m3 takes no scale rule, not pow2/],
    ["bf16:448+64:fp8_ds_v4", /a fp8_ds_v4 cache is paged; add @pageSize/],
    ["bf16:448+64:fp8_ds_v4@0", /the page size is a whole number >= 1/],
    ["bf16:512+64:fp8_e4m3@64", /fp8_e4m3 is not paged; it takes no page size/],
    ["f32:512+64", /dtype f32 is not one of bf16, fp16, u8, fp8_e4m3, fp8_e5m2/],
    ["bf16:0+0", /nope and rope are element counts >= 0 with a positive sum/],
    ["bf16:40000+0", /a row of 80000 bytes is more than the 65536 the tuner times/],
  ];
  for (const [spec, message] of badSpecs) {
    it(`exits 2 for the layout spec ${JSON.stringify(spec)}`, () => {
      const f = fake();
      expect(f.run("--layout", spec)).toBe(2);
      expect(f.stderr.text).toMatch(message);
      expect(f.stderr.text).toStartWith(`autotune: --layout ${JSON.stringify(spec)}`);
      expect(f.stderr.text).toEndWith("; see --help.\n");
      expect(f.stderr.text.split("\n").length).toBe(2);
      expect(f.stderr.text).not.toMatch(/\n\s+at /);
      expect(f.gpuCalls()).toBe(0);
    });
  }

  it("exits 2 for a device that is not there, naming the ones that are", () => {
    const f = fake({ gpus: [H100, A100] });
    expect(f.run("--device", "3")).toBe(2);
    expect(f.stderr.text).toBe("autotune: --device 3 is not a GPU here (this machine has 2 GPUs: indices 0 and 1); see --help.\n");
    expect(f.tuners).toEqual([]);
    const three = fake({ gpus: [H100, A100, { ...H100, index: 2 }] });
    expect(three.run("--device", "5")).toBe(2);
    expect(three.stderr.text).toBe("autotune: --device 5 is not a GPU here (this machine has 3 GPUs: indices 0, 1 and 2); see --help.\n");
  });

  it("says, for a device that is not there on a machine with one GPU, that index 0 is the one", () => {
    const f = fake({ gpus: [H100] });
    expect(f.run("--device", "5")).toBe(2);
    expect(f.stderr.text).toBe("autotune: --device 5 is not a GPU here (this machine has 1 GPU: index 0); see --help.\n");
  });
});

describe("layout specs", () => {
  it("read as the sources' dtype, element counts, and the format with its scale rule and page size", () => {
    expect(parseLayoutSpec("bf16:512+64")).toEqual({ dtype: "bf16", nope: 512, rope: 64 });
    expect(parseLayoutSpec("u8:528+128")).toEqual({ dtype: "u8", nope: 528, rope: 128 });
    expect(parseLayoutSpec("fp8_e4m3:656+0")).toEqual({ dtype: "fp8_e4m3", nope: 656, rope: 0 });
    expect(parseLayoutSpec("bf16:512+64:fp8_ds_mla.amax")).toEqual({ dtype: "bf16", nope: 512, rope: 64, format: "fp8_ds_mla", scaleRule: "amax" });
    expect(parseLayoutSpec("bf16:448+64:fp8_ds_v4@64")).toEqual({ dtype: "bf16", nope: 448, rope: 64, format: "fp8_ds_v4", pageSize: 64 });
    expect(parseLayoutSpec("bf16:128+0:fp8_indexer@64")).toEqual({ dtype: "bf16", nope: 128, rope: 0, format: "fp8_indexer", pageSize: 64 });
  });

  it("reach the tuner as the layouts dispatch keys its tables by, the default scale rule filled in", () => {
    const f = fake();
    const specs = ["bf16:512+64:fp8_ds_mla.amax", "bf16:448+64:fp8_ds_v4@64", "bf16:128+0:fp8_indexer@64", "fp16:512+64:fp8_e5m2"];
    expect(f.run(...specs.flatMap((s) => ["--layout", s]), "--loc", "i64")).toBe(0);
    expect(f.tunedKeys()).toEqual([
      "fp8_ds_mla.amax<bf16:512+64/i64",
      "fp8_ds_v4.pow2<bf16:448+64@p64/i64",
      "fp8_indexer.amax<bf16:128+0@p64/i64",
      "fp8_e5m2<fp16:512+64/i64",
    ]);
    expect(f.tuners[1]!.layout).toEqual({ format: "fp8_ds_v4", sourceDtype: "bf16", nopeBytes: 896, ropeBytes: 128, locBytes: 8, pageSize: 64, scaleRule: "pow2" });
    expect(f.stdout.text).toContain("GPU 0 NVIDIA H100 80GB HBM3: bf16:448+64:fp8_ds_v4@64, i64 loc (fp8_ds_v4.pow2<bf16:448+64@p64/i64, 576 B per row)\n");
    expect(f.stdout.text).toContain("GPU 0 NVIDIA H100 80GB HBM3: bf16:128+0:fp8_indexer@64, i64 loc (fp8_indexer.amax<bf16:128+0@p64/i64, 128 B per row)\n");
  });

  it("that name one layout are one tune: a format with its default scale rule spelled out or not", () => {
    const f = fake();
    expect(f.run("--layout", "bf16:512+64:fp8_ds_mla", "--layout", "bf16:512+64:fp8_ds_mla.pow2", "--loc", "i32")).toBe(0);
    expect(f.tunedKeys()).toEqual(["fp8_ds_mla.pow2<bf16:512+64/i32"]);
    expect(f.stdout.text).toContain("bf16:512+64:fp8_ds_mla = bf16:512+64:fp8_ds_mla.pow2, i32 loc");
  });
});

describe("no GPU", () => {
  it("exits 3 with a sentence that gives the reason when there is no GPU here", () => {
    const f = fake({ gpus: { error: "cuInit: no CUDA-capable device is detected", noGpu: true } });
    expect(f.run()).toBe(3);
    expect(f.stderr.text).toBe("autotune: no NVIDIA GPU found (cuInit: no CUDA-capable device is detected); nothing to tune.\n");
    expect(f.stdout.text).toBe("");
    const empty = fake({ gpus: [] });
    expect(empty.run("--layout", "bf16:512+64")).toBe(3);
    expect(empty.stderr.text).toBe("autotune: no NVIDIA GPU found (the driver reports no devices); nothing to tune.\n");
  });

  it("exits 1 when the GPUs cannot be asked about: the library did not load, or the query threw", () => {
    const unloaded = fake({ gpus: { error: "libmla_kv could not be loaded (bun). Tried:" } });
    expect(unloaded.run()).toBe(1);
    expect(unloaded.stderr.text).toBe("autotune: cannot use the GPUs (libmla_kv could not be loaded (bun). Tried:); nothing tuned.\n");
    const throwing = fake({
      gpus: () => {
        throw new Error("libmla_kv.so: cannot open shared object file\n    at dlopen");
      },
    });
    expect(throwing.run()).toBe(1);
    expect(throwing.stderr.text).toBe("autotune: cannot use the GPUs (libmla_kv.so: cannot open shared object file); nothing tuned.\n");
  });

  it("exits 1, saying so, when the library cannot be loaded", () => {
    const r = runCommand("cli/autotune.ts", ["--layout", "bf16:512+64"], { MLA_KV_LIBRARY: join(freshDir(), "libmla_kv.so"), MLA_KV_QUIET: "1" });
    expect(r.exitCode, describeRun(r)).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(/^autotune: cannot use the GPUs \(libmla_kv could not be loaded.*\); nothing tuned\.\n$/);
  });
});

const host = hostLibrary();
describe.skipIf(!host)(`the GPU side against the host implementation of the ABI${host ? "" : " (skipped: the C fixture did not build)"}`, () => {
  const tunerBody = `
    const { createGpuDeps } = await import(root + "/cli/autotune_gpu.ts");
    const { gpuIdentity } = await import(root + "/autotune/identity.ts");
    const { copyLayout } = await import(root + "/src/layout_key.ts");
    const side = createGpuDeps();
    // 16-byte rows: small scratch, and a TMA path on sm_90 but no specialized kernels.
    const tuner = side.tunerFor(0, copyLayout(16, 0, 8));
    return {
      gpus: side.gpus(),
      identity: gpuIdentity(0),
      paths: tuner.paths,
      tma: tuner.allowed({ path: "tma", warps: 4, rowsPerWarp: 1 }),
      pdl: tuner.pdl,
      maxBucket: tuner.maxBucket,
      us: tuner.measure({ path: "vector", warps: 4, rowsPerWarp: 1 }, 8),
    };
  `;

  it("lists each GPU with its name and identity, and gives each layout a tuner of what the device can run", () => {
    const hopper = runInChild(tunerBody, { MLA_KV_LIBRARY: host! });
    const v = hopper.value as { gpus: GpuInfo[]; identity: GpuIdentity; paths: string[]; tma: boolean; pdl: boolean; maxBucket: number; us: number };
    expect(v, describeChild(hopper)).toBeDefined();
    expect(v.gpus).toEqual([{ index: 0, name: "Host Fixture GPU", identity: v.identity }]);
    expect(v.paths).toEqual(["vector", "tma"]);
    expect(v.tma).toBe(true);
    expect(v.pdl).toBe(true);
    // The host fixture has 40 GiB free: every bucket fits.
    expect(v.maxBucket).toBe(BUCKET_COUNT - 1);
    expect(v.us).toBeGreaterThan(0);
    expect(Number.isFinite(v.us)).toBe(true);

    const ampere = runInChild(tunerBody, { MLA_KV_LIBRARY: host!, HOST_MLA_KV_CC_MAJOR: "8" });
    const a = ampere.value as typeof v;
    expect(a, describeChild(ampere)).toBeDefined();
    expect(a.paths).toEqual(["vector"]);
    expect(a.tma).toBe(false);
    expect(a.pdl).toBe(false);
  });

  it("exits 3 when the library loads but there is no GPU here, and 2 naming index 0 for a device that is not there", () => {
    const none = runCommand("cli/autotune.ts", [], { MLA_KV_LIBRARY: host!, HOST_MLA_KV_DEVICE_COUNT: "0" });
    expect(none.exitCode, describeRun(none)).toBe(3);
    expect(none.stderr).toBe("autotune: no NVIDIA GPU found (the NVIDIA driver reports no GPU); nothing to tune.\n");
    const five = runCommand("cli/autotune.ts", ["--device", "5"], { MLA_KV_LIBRARY: host! });
    expect(five.exitCode, describeRun(five)).toBe(2);
    expect(five.stderr).toBe("autotune: --device 5 is not a GPU here (this machine has 1 GPU: index 0); see --help.\n");
  });

  it("tunes a layout end to end as bun cli/autotune.ts and saves a valid profile with the launches' PDL", () => {
    const cache = freshDir();
    const r = runCommand("cli/autotune.ts", ["--layout", "bf16:128+0:fp8_indexer@64", "--loc", "i32", "--quiet"], { MLA_KV_LIBRARY: host!, MLA_KV_CACHE_DIR: cache });
    expect(r.exitCode, describeRun(r)).toBe(0);
    expect(r.stderr).toBe("");
    expect(r.stdout).toContain("GPU 0 Host Fixture GPU: bf16:128+0:fp8_indexer@64, i32 loc (fp8_indexer.amax<bf16:128+0@p64/i32, 128 B per row)\n");
    expect(r.stdout).toContain("fastest: vector at n = 1-65536\n");
    const saved = /^profile: (.*)$/m.exec(r.stdout)?.[1];
    expect(saved, describeRun(r)).toStartWith(cache);
    const profile = ProfileSchema.parse(JSON.parse(readFileSync(saved!, "utf8")));
    const layout = profile.layouts["fp8_indexer.amax<bf16:128+0@p64/i32"]!;
    expect(layout.pdl).toBe(true);
    expect(layout.buckets.length).toBe(BUCKET_COUNT);
    expect(layout.buckets.every((b) => b.ranked.length === 1 && b.ranked[0]!.path === "vector")).toBe(true);
  });
});

describe("a tune", () => {
  it("prints a row per bucket with the chosen launch and the next design, as saved, the time taken and where the profile went", () => {
    const f = fake();
    expect(f.run("--layout", "bf16:512+64", "--loc", "i64")).toBe(0);
    const out = f.stdout.text;
    expect(out).toStartWith("GPU 0 NVIDIA H100 80GB HBM3: bf16:512+64, i64 loc (1024+128/i64, 1152 B per row)\n");
    const lines = out.split("\n");
    expect(lines[1]).toMatch(/^\s*n\s+chosen\s+µs\/call\s+GB\/s\s+next design\s+µs\s+next\/chosen$/);
    const saved = f.stored.get(`${identityKey(H100.identity)}|1024+128/i64`)!;
    expect(saved.buckets.length).toBe(BUCKET_COUNT);
    saved.buckets.forEach((b, i) => {
      const [best, next] = [b.ranked[0]!, b.ranked[1]!];
      const cells = lines[2 + i]!.trim().split(/ {2,}/);
      expect(cells).toEqual([
        String(b.n),
        launchCell(best),
        best.us.toFixed(2),
        expect.stringMatching(/^[0-9.]+$/),
        launchCell(next),
        next.us.toFixed(2),
        `${(next.us / best.us).toFixed(2)}×`,
      ]);
    });
    expect(out).toMatch(/\ntuned in [0-9.]+ s: search, [0-9]+ timings \(there are 816 config × n pairs\)\n/);
    expect(out).toContain(`\nprofile: /fake/cache/${identityKey(H100.identity)}.json\n`);
    expect(f.saves).toEqual(["1024+128/i64"]);
    expect(f.tuners).toEqual([{ device: 0, layout: { format: "copy", sourceDtype: null, nopeBytes: 1024, ropeBytes: 128, locBytes: 8, pageSize: 0, scaleRule: null } }]);
  });

  it("says which design is fastest where, and names spread's launch by its rows alone", () => {
    const f = fake({ measure: () => threeWinners });
    expect(f.run("--layout", "bf16:512+64", "--loc", "i32")).toBe(0);
    expect(f.stdout.text).toContain("\nfastest: spread at n = 1-32, specialized at n = 64-8192, tma at n = 16384-65536\n");
    expect(f.stdout.text).toMatch(/\n\s*32\s+spread r1\s+[0-9.]+\s+[0-9.]+\s+specialized w4r1\s/);
    expect(f.stdout.text).toMatch(/\n\s*64\s+specialized w4r1\s+[0-9.]+\s+[0-9.]+\s+vector w4r1\s/);
    expect(f.stdout.text).toMatch(/\n\s*65536\s+tma w4r1\s+[0-9.]+\s+[0-9.]+\s+specialized w4r1\s/);
  });

  it("says so when one design is fastest everywhere, and when one wins at a single n", () => {
    const f = fake({ measure: () => (c, n) => threeWinners(c, n) * (c.path === "vector" ? 0.5 : 1) });
    expect(f.run("--layout", "bf16:512+64", "--loc", "i32")).toBe(0);
    expect(f.stdout.text).toContain("\nfastest: vector at n = 1-65536\n");
    const late = fake({ measure: () => (c, n) => threeWinners(c, n) * (c.path === "tma" && n < 65536 ? 2 : 1) });
    expect(late.run("--layout", "bf16:512+64", "--loc", "i32")).toBe(0);
    expect(late.stdout.text).toContain("\nfastest: spread at n = 1-32, specialized at n = 64-32768, tma at n = 65536\n");
  });

  it("shows GB/s as twice the row bytes moved per call", () => {
    const f = fake({ measure: () => () => 2 });
    expect(f.run("--layout", "u8:528+128", "--loc", "i32")).toBe(0);
    // n = 1024: 2 × 1024 × 656 B in 2 µs = 671.7 GB/s; all tie, so the first launch of the first two designs.
    expect(f.stdout.text).toMatch(/\n\s*1024\s+vector w1r1\s+2\.00\s+672\s+tma w1r1\s+2\.00\s+1\.00×\n/);
    // n = 1: 1.312 GB/s; n = 16: 10.5 GB/s.
    expect(f.stdout.text).toMatch(/\n\s*1\s+vector w1r1\s+2\.00\s+0\.66\s/);
    expect(f.stdout.text).toMatch(/\n\s*16\s+vector w1r1\s+2\.00\s+10\.5\s/);
  });

  it("tunes the default layouts, both loc dtypes, once per distinct row size", () => {
    const f = fake();
    expect(f.run()).toBe(0);
    const keys = [...DEFAULT_KEYS_I32, ...DEFAULT_KEYS_I32.map((k) => k.replace("/i32", "/i64"))];
    expect(f.saves).toEqual(keys);
    expect(f.tunedKeys()).toEqual(keys);
    for (const loc of ["i32", "i64"]) {
      expect(f.stderr.text).toContain(`bf16:512+64 and fp16:512+64 have the same bytes per row (1024+128/${loc}); tuned once for all of them.`);
      expect(f.stdout.text).toContain(`bf16:512+64 = fp16:512+64, ${loc} loc`);
    }
  });

  it("leaves the next-design columns empty when only the vector path runs", () => {
    const f = fake();
    expect(f.run("--layout", "bf16:448+64:fp8_ds_v4@64", "--loc", "i32")).toBe(0);
    const rows = f.stdout.text.split("\n").slice(2, 2 + BUCKET_COUNT);
    for (const row of rows) expect(row).toMatch(/^\s*\d+\s+vector w\d+r\d\s+[0-9.]+\s+[0-9.]+\s+—\s+—\s+—$/);
    expect(f.stdout.text).toContain("\nfastest: vector at n = 1-65536\n");
    expect(f.stdout.text).not.toMatch(/\b(tma|specialized|spread)\b/);
  });

  it("offers the designs each GPU can run: no TMA before sm_90", () => {
    const f = fake({ gpus: [A100], measure: () => threeWinners });
    expect(f.run("--layout", "bf16:512+64", "--loc", "i32")).toBe(0);
    expect(f.stdout.text).not.toMatch(/\btma\b/);
    expect(f.stdout.text).toContain("\nfastest: spread at n = 1-32, specialized at n = 64-65536\n");
  });

  it("tunes only the buckets the tuner's scratch memory allows", () => {
    const f = fake({ maxBucket: 9 });
    expect(f.run("--layout", "bf16:512+64", "--loc", "i64")).toBe(0);
    const rows = f.stdout.text.split("\n").slice(2).filter((l) => /^\s*\d+\s/.test(l));
    expect(rows.map((l) => Number(l.trim().split(/\s+/)[0]))).toEqual([1, 2, 4, 8, 16, 32, 64, 128, 256, 512]);
    expect(f.stdout.text).toMatch(/\(there are 480 config × n pairs\)/);
  });

  it("tunes every distinct GPU, and identical GPUs once", () => {
    const twin: GpuInfo = { ...H100, index: 2 };
    const f = fake({ gpus: [H100, A100, twin] });
    expect(f.run("--layout", "bf16:512+64", "--loc", "i64")).toBe(0);
    expect(f.tuners.map((m) => m.device)).toEqual([0, 1]);
    expect(f.stderr.text).toContain("GPU 2 is the same setup as GPU 0 (NVIDIA H100 80GB HBM3); one profile serves both.");
    expect(f.stdout.text).toContain("GPU 1 NVIDIA A100-SXM4-80GB: bf16:512+64, i64 loc");
    const only = fake({ gpus: [H100, A100, twin] });
    expect(only.run("--layout", "bf16:512+64", "--loc", "i64", "--device", "2")).toBe(0);
    expect(only.tuners.map((m) => m.device)).toEqual([2]);
    const twice = fake({ gpus: [H100, A100] });
    expect(twice.run("--layout", "bf16:512+64", "--loc", "i64", "--device", "1", "--device", "1")).toBe(0);
    expect(twice.tuners.map((m) => m.device)).toEqual([1]);
    expect(twice.stderr.text).not.toContain("same setup");
  });

  it("times every launch of every design at every n with --exhaustive", () => {
    const timed = new Set<string>();
    const f = fake({ measure: () => (c, n) => (timed.add(`${c.path}:${c.warps}:${c.rowsPerWarp}@${n}`), h200Designs.truth(c, n)) });
    expect(f.run("--layout", "bf16:512+64", "--loc", "i64", "--exhaustive")).toBe(0);
    const space = configSpace(["vector", "tma", "specialized", "spread"]);
    const every = new Set(space.flatMap((c) => Array.from({ length: BUCKET_COUNT }, (_, b) => `${c.path}:${c.warps}:${c.rowsPerWarp}@${2 ** b}`)));
    expect(timed).toEqual(every);
    expect(every.size).toBe(816);
    // Each timing once, then the leaders of each design in reach again.
    const count = Number(/exhaustive, ([0-9]+) timings \(there are 816 config × n pairs\)/.exec(f.stdout.text)?.[1]);
    expect(count).toBeGreaterThan(816);
    expect([...f.stored.values()][0]!.method).toBe("exhaustive");
    const searched = fake();
    expect(searched.run("--layout", "bf16:512+64", "--loc", "i64")).toBe(0);
    expect(Number(/search, ([0-9]+) timings/.exec(searched.stdout.text)?.[1])).toBeLessThan(816);
  });

  it("exits 1 when a timing fails, saying which layout and GPU", () => {
    const f = fake({
      gpus: [H100, A100],
      measure: (device) => (c, n) => {
        if (device === 1) throw new Error("CUDA error 700: an illegal memory access was encountered");
        return h200Designs.truth(c, n);
      },
    });
    expect(f.run("--layout", "u8:528+128", "--loc", "i64")).toBe(1);
    expect(f.stderr.text).toContain(
      "autotune: tuning u8:528+128, i64 loc on GPU 1 failed: CUDA error 700: an illegal memory access was encountered\n",
    );
    expect(f.saves).toEqual(["528+128/i64"]);
    expect(f.stdout.text).not.toContain("GPU 1 NVIDIA A100");
  });

  it("exits 1 when the tuner cannot be made, saying which layout and GPU", () => {
    const f = fake({ tunerError: new Error("not enough free GPU memory to time writes (12 MiB usable)") });
    expect(f.run("--layout", "bf16:448+64:fp8_ds_v4@64", "--loc", "i32")).toBe(1);
    expect(f.stderr.text).toBe(
      "autotune: tuning bf16:448+64:fp8_ds_v4@64, i32 loc on GPU 0 failed: not enough free GPU memory to time writes (12 MiB usable)\n",
    );
    expect(f.saves).toEqual([]);
    expect(f.stdout.text).toBe("");
  });

  it("exits 1 when a profile cannot be saved, after tuning the rest", () => {
    const f = fake({ failSave: (key) => key === "1024+128/i32" });
    expect(f.run("--loc", "i32")).toBe(1);
    expect(f.stderr.text).toContain("autotune: could not save the profile for 1024+128/i32: EROFS: read-only file system\n");
    expect(f.stdout.text).toContain("\nprofile: not saved\n");
    expect(f.saves).toEqual(DEFAULT_KEYS_I32.slice(1));
    expect(f.tunedKeys()).toEqual(DEFAULT_KEYS_I32);
  });
});

describe("--json", () => {
  it("prints the resulting profile as valid JSON and no tables", () => {
    const f = fake();
    expect(f.run("--json", "--layout", "bf16:512+64", "--layout", "u8:528+128", "--loc", "i64")).toBe(0);
    const profile = ProfileSchema.parse(JSON.parse(f.stdout.text));
    expect(Object.keys(profile.layouts).sort()).toEqual(["1024+128/i64", "528+128/i64"]);
    expect(profile.gpu).toEqual(H100.identity.gpu);
    expect(profile.layouts["1024+128/i64"]).toEqual(f.stored.get(`${identityKey(H100.identity)}|1024+128/i64`)!);
    expect(f.stdout.text).not.toContain("fastest:");
  });

  it("prints one profile per GPU setup, as an array when there are several, each with its designs and PDL", () => {
    const f = fake({ gpus: [H100, A100] });
    expect(f.run("--json", "--layout", "bf16:512+64", "--loc", "i32")).toBe(0);
    const value = JSON.parse(f.stdout.text) as unknown[];
    expect(Array.isArray(value)).toBe(true);
    const profiles = value.map((p) => ProfileSchema.parse(p));
    expect(profiles.map((p) => p.gpu.name)).toEqual([H100.name, A100.name]);
    const [hopper, ampere] = profiles.map((p) => p.layouts["1024+128/i32"]!);
    expect(hopper!.pdl).toBe(true);
    expect(ampere!.pdl).toBe(false);
    const designs = (l: LayoutProfile) => [...new Set(l.buckets.flatMap((b) => b.ranked.map((c) => c.path)))].sort();
    expect(designs(hopper!)).toEqual(["specialized", "spread", "tma", "vector"]);
    expect(designs(ampere!)).toEqual(["specialized", "spread", "vector"]);
  });

  it("includes stored layouts that were not tuned again", () => {
    const old = fakeLayoutProfile(3, 16);
    const f = fake({ stored: new Map([[`${identityKey(H100.identity)}|1024+128/i64`, old]]) });
    expect(f.run("--json", "--layout", "bf16:512+64", "--loc", "i64")).toBe(0);
    expect(ProfileSchema.parse(JSON.parse(f.stdout.text)).layouts["1024+128/i64"]).toEqual(old);
    expect(f.tuners).toEqual([]);
  });
});

describe("--plot", () => {
  it("writes an SVG with a line per design and the chosen one dashed", () => {
    const file = join(freshDir(), "h100.svg");
    const f = fake();
    expect(f.run("--layout", "bf16:512+64", "--loc", "i64", "--plot", file)).toBe(0);
    const svg = readFileSync(file, "utf8");
    expect(svg.startsWith("<svg")).toBe(true);
    for (const design of ["vector", "tma", "specialized", "spread"]) expect(svg).toContain(`<title>${design}, best launch per n</title>`);
    expect(svg).toContain("<title>chosen (what dispatch uses)</title>");
    expect(svg).toMatch(/stroke-dasharray="7 4"><title>chosen \(what dispatch uses\)<\/title>/);
    expect(svg.match(/<path class="series"/g)?.length).toBe(5);
    expect(f.stdout.text).toContain(`\nplot: ${file}\n`);
  });

  it("writes one file per layout, named after it, when there are several", () => {
    const dir = freshDir();
    const f = fake();
    expect(f.run("--plot", join(dir, "tune.svg"), "--quiet")).toBe(0);
    expect(readdirSync(dir).sort()).toEqual([
      "tune-bf16-128+0-fp8_indexer@64-i32.svg",
      "tune-bf16-128+0-fp8_indexer@64-i64.svg",
      "tune-bf16-448+64-fp8_ds_v4@64-i32.svg",
      "tune-bf16-448+64-fp8_ds_v4@64-i64.svg",
      "tune-bf16-512+64-fp8_ds_mla-i32.svg",
      "tune-bf16-512+64-fp8_ds_mla-i64.svg",
      "tune-bf16-512+64-fp8_e4m3-i32.svg",
      "tune-bf16-512+64-fp8_e4m3-i64.svg",
      "tune-bf16-512+64-i32.svg",
      "tune-bf16-512+64-i64.svg",
      "tune-u8-528+128-i32.svg",
      "tune-u8-528+128-i64.svg",
    ]);
  });

  it("exits 1 when the plot cannot be written, after the table", () => {
    const blocker = join(freshDir(), "file");
    writeFileSync(blocker, "x");
    const f = fake();
    expect(f.run("--layout", "bf16:512+64", "--loc", "i64", "--plot", join(blocker, "h100.svg"))).toBe(1);
    expect(f.stderr.text).toMatch(new RegExp(`\nautotune: could not write the plot ${join(blocker, "h100.svg")}: [^\n]+\n$`));
    expect(f.saves).toEqual(["1024+128/i64"]);
    expect(f.stdout.text).toContain("\nfastest: ");
    expect(f.stdout.text).not.toContain("plot: ");
  });

  it("has a line only for the designs that ran", () => {
    const a100 = join(freshDir(), "a100.svg");
    const f = fake({ gpus: [A100] });
    expect(f.run("--layout", "bf16:512+64", "--loc", "i64", "--plot", a100)).toBe(0);
    const svg = readFileSync(a100, "utf8");
    for (const design of ["vector", "specialized", "spread"]) expect(svg).toContain(`${design}, best launch per n`);
    expect(svg).not.toContain("tma, best launch per n");

    const paged = join(freshDir(), "v4.svg");
    expect(fake().run("--layout", "bf16:448+64:fp8_ds_v4@64", "--loc", "i64", "--plot", paged)).toBe(0);
    expect(readFileSync(paged, "utf8").match(/<title>[^<]*<\/title>/g)?.filter((t) => /best launch|chosen/.test(t))).toEqual([
      "<title>vector, best launch per n</title>",
      "<title>chosen (what dispatch uses)</title>",
    ]);
  });

  it("with --json names the file on stderr on a line of its own, the progress line taken off first", () => {
    const file = join(freshDir(), "json.svg");
    const f = fake({ tty: true });
    expect(f.run("--layout", "bf16:512+64", "--loc", "i64", "--json", "--plot", file)).toBe(0);
    expect(f.stderr.text).toContain(`\r\x1b[Kautotune: plot: ${file}\n`);
    ProfileSchema.parse(JSON.parse(f.stdout.text));
  });
});

describe("existing profiles", () => {
  it("are shown, not tuned again, without --force", () => {
    const f = fake();
    expect(f.run("--layout", "bf16:512+64", "--loc", "i64")).toBe(0);
    expect(f.tuners.length).toBe(1);
    const first = f.stdout.text;

    const again = fake({ stored: f.stored });
    expect(again.run("--layout", "bf16:512+64", "--loc", "i64")).toBe(0);
    expect(again.tuners).toEqual([]);
    expect(again.saves).toEqual([]);
    expect(again.stdout.text).toMatch(/\nstored profile, tuned 2026-01-01T.* in [0-9.]+ s \(search\); kept, --force tunes again\n/);
    expect(again.stdout.text).not.toContain("profile: /fake");
    // The same table and winners as when it was tuned.
    const table = (s: string) => s.split("\n").slice(0, 3 + BUCKET_COUNT).join("\n");
    expect(table(again.stdout.text)).toBe(table(first));
    expect(table(first)).toContain("fastest: ");
  });

  it("that cannot be read are tuned, saying why", () => {
    const f = fake();
    f.deps.store.existing = () => {
      throw new Error("EACCES: permission denied, open '/fake/cache/x.json'");
    };
    expect(f.run("--layout", "bf16:512+64", "--loc", "i64")).toBe(0);
    expect(f.stderr.text).toStartWith(
      "autotune: could not read the stored profile for 1024+128/i64 (EACCES: permission denied, open '/fake/cache/x.json'); tuning it.\n",
    );
    expect(f.saves).toEqual(["1024+128/i64"]);
  });

  it("are tuned again and replaced with --force", () => {
    const old = fakeLayoutProfile(3, 16);
    const stored = new Map([[`${identityKey(H100.identity)}|1024+128/i64`, old]]);
    const f = fake({ stored });
    expect(f.run("--layout", "bf16:512+64", "--loc", "i64", "--force")).toBe(0);
    expect(f.tuners.length).toBe(1);
    expect(f.saves).toEqual(["1024+128/i64"]);
    expect(stored.get(`${identityKey(H100.identity)}|1024+128/i64`)).not.toBe(old);
    expect(f.stdout.text).not.toContain("stored profile");
  });
});

describe("progress", () => {
  it("is a line per quarter when stderr is not a terminal", () => {
    const f = fake();
    expect(f.run("--layout", "bf16:512+64")).toBe(0);
    const lines = f.stderr.text.trimEnd().split("\n");
    expect(quarters(lines)).toEqual(["25", "50", "75", "100"]);
    expect(lines.at(-1)).toBe("autotune: 100% (bf16:512+64, i64 loc, n = 65536)");
    expect(f.stderr.text).not.toContain("\r");
  });

  it("reaches 100% when the scratch memory leaves buckets untuned", () => {
    const f = fake({ maxBucket: 9 });
    expect(f.run("--layout", "bf16:512+64")).toBe(0);
    const lines = f.stderr.text.trimEnd().split("\n");
    expect(quarters(lines)).toEqual(["25", "50", "75", "100"]);
    expect(lines.at(-1)).toBe("autotune: 100% (bf16:512+64, i64 loc, n = 512)");
    const tty = fake({ maxBucket: 9, tty: true });
    expect(tty.run("--layout", "bf16:512+64", "--loc", "i64")).toBe(0);
    expect(tty.stderr.text.split("\r\x1b[K").filter((s) => s !== "").at(-1)).toMatch(/^\[#{20}\] 100%/);
  });

  it("is one line redrawn in place on a terminal, cleared before each table", () => {
    const f = fake({ tty: true });
    expect(f.run("--layout", "bf16:512+64", "--loc", "i64")).toBe(0);
    const draws = f.stderr.text.split("\r\x1b[K").filter((s) => s !== "");
    expect(draws.length).toBe(BUCKET_COUNT);
    expect(draws.at(-1)).toMatch(/^\[#{20}\] 100%  bf16:512\+64, i64 loc, n = 65536$/);
    expect(f.stderr.text.endsWith("\r\x1b[K")).toBe(true);
    expect(f.stderr.text).not.toContain("\n");
    for (const d of draws) expect(d.length).toBeLessThanOrEqual(78);
  });

  it("shortens a redrawn line that would wrap on an 80-column terminal", () => {
    const f = fake({ tty: true, gpus: [H100, A100] });
    expect(f.run("--layout", "bf16:512+64:fp8_ds_mla.amax", "--loc", "i64")).toBe(0);
    const draws = f.stderr.text.split("\r\x1b[K").filter((s) => s !== "");
    expect(draws.length).toBe(2 * BUCKET_COUNT);
    for (const d of draws) expect(d.length).toBeLessThanOrEqual(78);
    expect(draws.at(-1)).toMatch(/^\[#{20}\] 100%  GPU 1 bf16:512\+64:fp8_ds_mla\.amax, i64 loc, n = .*…$/);
  });

  it("is off with --quiet and with MLA_KV_QUIET=1", () => {
    const quiet = fake({ tty: true });
    expect(quiet.run("--quiet")).toBe(0);
    expect(quiet.stderr.text).toBe("");
    expect(quiet.stdout.text).toContain("fastest:");
    const env = fake({ env: { MLA_KV_QUIET: "1" } });
    expect(env.run()).toBe(0);
    expect(env.stderr.text).toBe("");
    expect(env.stdout.text).toContain("fastest:");
  });

  it("stays on, with one warning, for an MLA_KV_QUIET that is no switch", () => {
    const f = fake({ env: { MLA_KV_QUIET: "loud" } });
    expect(f.run("--layout", "bf16:512+64", "--loc", "i64")).toBe(0);
    const lines = f.stderr.text.trimEnd().split("\n");
    expect(lines[0]).toBe('mla-kv: MLA_KV_QUIET="loud" is neither on (1, true, yes, on) nor off (0, false, no, off or empty); using the default, off');
    expect(quarters(lines.slice(1))).toEqual(["25", "50", "75", "100"]);
  });
});

describe("a run on the user profile store", () => {
  it("backs a whole run end to end", () => {
    const cache = join(freshDir(), "cache");
    const store = () => userProfileStore({ MLA_KV_CACHE_DIR: cache }, () => {}, new ProfileLookup({ bundledDir: freshDir() }));
    const f = fake();
    f.deps.store = store();
    expect(f.run("--layout", "u8:528+128", "--loc", "i32")).toBe(0);
    expect(f.stdout.text).toContain(`\nprofile: ${profilePath(cache, H100.identity)}\n`);
    const onDisk = ProfileSchema.parse(JSON.parse(readFileSync(profilePath(cache, H100.identity), "utf8")));
    expect(Object.keys(onDisk.layouts)).toEqual(["528+128/i32"]);
    const second = fake();
    second.deps.store = store();
    expect(second.run("--layout", "u8:528+128", "--loc", "i32")).toBe(0);
    expect(second.tuners).toEqual([]);
    expect(second.stdout.text).toContain("stored profile");
  });
});

describe("the command", () => {
  it("runs as bun cli/autotune.ts: --help exits 0, a bad flag exits 2 without a stack trace", () => {
    const help = runCommand("cli/autotune.ts", ["--help"], { MLA_KV_QUIET: "" });
    expect(help.exitCode, describeRun(help)).toBe(0);
    expect(help.stdout).toBe(autotuneHelp());
    expect(help.stderr).toBe("");
    const bad = runCommand("cli/autotune.ts", ["--layout", "bf16:512"]);
    expect(bad.exitCode, describeRun(bad)).toBe(2);
    expect(bad.stdout).toBe("");
    expect(bad.stderr).toBe(
      'autotune: --layout "bf16:512" is not dtype:nope+rope[:format[.rule][@pageSize]], e.g. bf16:512+64 or bf16:448+64:fp8_ds_v4@64; see --help.\n',
    );
  });
});
