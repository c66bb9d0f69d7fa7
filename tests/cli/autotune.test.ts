import { describe, expect, it } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { profilePath, type Env } from "../../autotune/cache_dir.ts";
import { runAutotune, type AutotuneDeps } from "../../cli/autotune.ts";
import { autotuneHelp, parseLayoutSpec, type TuneLayoutSpec } from "../../cli/autotune_flags.ts";
import type { GpuInfo, NoGpus } from "../../cli/autotune_gpu.ts";
import { userProfileStore } from "../../cli/autotune_store.ts";
import { ProfileLookup } from "../../autotune/lookup.ts";
import {
  ProfileSchema,
  identityKey,
  type GpuIdentity,
  type LayoutProfile,
} from "../../autotune/profile.ts";
import { fakeLayoutProfile, h100 } from "../autotune/fixtures/fake.ts";
import { h100Like, sharpCrossover } from "../autotune/fixtures/landscapes.ts";
import { describeRun, runCommand } from "../helpers/commands.ts";
import { hostLibrary } from "../helpers/host_library.ts";
import { describeChild, runInChild } from "../helpers/run_in_child.ts";
import { tempDirs } from "../helpers/temp_dirs.ts";

const freshDir = tempDirs("mla-kv-cli-");

const REPO = join(import.meta.dir, "..", "..");

const H100: GpuInfo = { index: 0, name: "NVIDIA H100 80GB HBM3", identity: h100(), tmaAllowed: true };
const A100: GpuInfo = {
  index: 1,
  name: "NVIDIA A100-SXM4-80GB",
  identity: h100({ gpu: { name: "NVIDIA A100-SXM4-80GB", ccMajor: 8, smCount: 108 } }),
  tmaAllowed: false,
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
  measure?: (device: number, layout: TuneLayoutSpec) => (cfg: Parameters<typeof h100Like.truth>[0], n: number) => number;
  failSave?: (layoutKey: string) => boolean;
}

function fake(opts: FakeOptions = {}) {
  const stdout = new Sink();
  const stderr = new Sink(opts.tty ?? false);
  const stored = opts.stored ?? new Map<string, LayoutProfile>();
  const measuredFor: Array<{ device: number; layout: TuneLayoutSpec }> = [];
  const saves: string[] = [];
  let gpuCalls = 0;
  let t = Date.UTC(2026, 0, 1);
  const deps: AutotuneDeps = {
    gpus: () => {
      gpuCalls++;
      const g = opts.gpus ?? [H100];
      return typeof g === "function" ? g() : g;
    },
    measureFor: (device, layout) => {
      measuredFor.push({ device, layout });
      if (opts.measure) return opts.measure(device, layout);
      // Smaller rows are faster, so layouts are told apart by their numbers.
      const scale = (layout.nopeElems + layout.ropeElems) / 576;
      return (cfg, n) => h100Like.truth(cfg, n) * scale;
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
    measuredFor,
    run: (...argv: string[]) => runAutotune(argv, deps),
    gpuCalls: () => gpuCalls,
  };
}

const FLAGS = ["--layout", "--loc", "--device", "--exhaustive", "--json", "--plot", "--force", "--quiet", "--help"];

describe("--help", () => {
  it("exits 0 and lists every flag, its default, the environment variables and examples", () => {
    for (const flag of ["--help", "-h"]) {
      const f = fake();
      expect(f.run(flag)).toBe(0);
      for (const name of FLAGS) expect(f.stdout.text).toContain(name);
      for (const v of ["MLA_KV_CACHE_DIR", "MLA_KV_AUTOTUNE", "MLA_KV_QUIET"]) expect(f.stdout.text).toContain(v);
      expect(f.stdout.text).toContain("Default: bf16:512+64, fp16:512+64, u8:528+128");
      expect(f.stdout.text).toContain("Default: both");
      expect(f.stdout.text).toContain("Examples:");
      expect(f.stdout.text).toContain("Exit status: 0 done; 1 the library did not load, or a tune, save or plot failed; 2 bad flags; 3 no usable NVIDIA GPU here.");
      expect(f.stdout.text).toBe(autotuneHelp());
      expect(f.stdout.text).toStartWith("Usage: bun run autotune [flags]\n");
      expect(f.stderr.text).toBe("");
      expect(f.gpuCalls()).toBe(0);
    }
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
    [["--plot", "out.png"], /must name a file ending in \.svg; see --help\.\n$/],
    [["--json", "--json"], /^autotune: --json was given 2 times \(give it once\); see --help\.\n$/],
    [["--loc", "i32", "--loc", "i64"], /--loc was given 2 times/],
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

  const badSpecs: Array<[string, RegExp]> = [
    ["bf16", /is not dtype:nope\+rope, e\.g\. bf16:512\+64/],
    ["bf16:512", /is not dtype:nope\+rope/],
    ["bf16:512-64", /is not dtype:nope\+rope/],
    ["bf16:512+64:1", /format 1 is not one of fp8_e4m3, fp8_e5m2, fp8_ds_mla/],
    ["u8:512+64:fp8_e4m3", /a fp8_e4m3 write quantizes bf16 or fp16 sources, not u8/],
    ["bf16:512+63:fp8_e4m3", /the rope part must be a multiple of 2 elements up to 128, got 63/],
    ["bf16:512+128:fp8_ds_mla", /fp8_ds_mla rows are 512\+64/],
    ["", /is not dtype:nope\+rope/],
    ["f32:512+64", /dtype f32 is not one of bf16, fp16, u8, fp8_e4m3, fp8_e5m2/],
    ["bf16:0+64", /the nope part needs at least one element/],
    ["bf16:40000+0", /a row of 80000 bytes is more than the 65536/],
  ];
  for (const [spec, message] of badSpecs) {
    it(`exits 2 for the layout spec ${JSON.stringify(spec)}`, () => {
      const f = fake();
      expect(f.run("--layout", spec)).toBe(2);
      expect(f.stderr.text).toMatch(message);
      expect(f.stderr.text).toMatch(/^autotune: --layout .*; see --help\.\n$/);
      expect(f.stderr.text).not.toMatch(/\n\s+at /);
    });
  }

  it("exits 2 for a device that is not there, naming the ones that are", () => {
    const f = fake({ gpus: [H100, A100] });
    expect(f.run("--device", "3")).toBe(2);
    expect(f.stderr.text).toBe("autotune: --device 3 is not a GPU here (this machine has 2 GPUs: indices 0 and 1); see --help.\n");
    expect(f.measuredFor).toEqual([]);
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
  it("read as dtype and element counts", () => {
    expect(parseLayoutSpec("bf16:512+64")).toEqual({ dtype: "bf16", nopeElems: 512, ropeElems: 64 });
    expect(parseLayoutSpec("u8:528+128")).toEqual({ dtype: "u8", nopeElems: 528, ropeElems: 128 });
    expect(parseLayoutSpec("fp8_e4m3:656+0")).toEqual({ dtype: "fp8_e4m3", nopeElems: 656, ropeElems: 0 });
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
    const proc = Bun.spawnSync(["bun", "cli/autotune.ts", "--layout", "bf16:512+64"], {
      cwd: REPO,
      env: { ...process.env, MLA_KV_LIBRARY: join(freshDir(), "libmla_kv.so"), MLA_KV_QUIET: "1" },
    });
    expect(proc.exitCode).toBe(1);
    expect(proc.stdout.toString()).toBe("");
    expect(proc.stderr.toString()).toMatch(/^autotune: cannot use the GPUs \(libmla_kv could not be loaded.*\); nothing tuned\.\n$/);
  });
});

const host = hostLibrary();
describe.skipIf(!host)(`the GPU side against the host implementation of the ABI${host ? "" : " (skipped: the C fixture did not build)"}`, () => {
  it("lists each GPU with its name, identity and whether TMA runs", () => {
    const result = runInChild(`
      const { createGpuDeps } = await import(root + "/cli/autotune_gpu.ts");
      const { gpuIdentity } = await import(root + "/autotune/identity.ts");
      return { gpus: createGpuDeps().gpus(), identity: gpuIdentity(0) };
    `, { MLA_KV_LIBRARY: host! });
    const value = result.value as { gpus: GpuInfo[]; identity: GpuIdentity };
    expect(value, describeChild(result)).toBeDefined();
    expect(value.gpus).toEqual([{ index: 0, name: "Host Fixture GPU", identity: value.identity, tmaAllowed: true }]);
  });

  it("exits 3 when the library loads but there is no GPU here, and 2 naming index 0 for a device that is not there", () => {
    const none = runCommand("cli/autotune.ts", [], { MLA_KV_LIBRARY: host!, HOST_MLA_KV_DEVICE_COUNT: "0" });
    expect(none.exitCode, describeRun(none)).toBe(3);
    expect(none.stderr).toBe("autotune: no NVIDIA GPU found (the NVIDIA driver reports no GPU); nothing to tune.\n");
    const five = runCommand("cli/autotune.ts", ["--device", "5"], { MLA_KV_LIBRARY: host! });
    expect(five.exitCode, describeRun(five)).toBe(2);
    expect(five.stderr).toBe("autotune: --device 5 is not a GPU here (this machine has 1 GPU: index 0); see --help.\n");
  });
});

describe("a tune", () => {
  it("prints a table with every bucket, the crossover, the time taken and where the profile went", () => {
    const f = fake();
    expect(f.run("--layout", "bf16:512+64", "--loc", "i64")).toBe(0);
    const out = f.stdout.text;
    expect(out).toContain("GPU 0 NVIDIA H100 80GB HBM3: bf16:512+64, i64 loc (1024+128/i64, 1152 B per row)");
    expect(out).toMatch(/n\s+path\s+warps\s+rows\/warp\s+µs\/call\s+GB\/s\s+other path µs\s+other\/chosen/);
    const lines = out.split("\n");
    for (let b = 0; b <= 16; b++) {
      expect(lines.some((l) => new RegExp(`^\\s*${2 ** b}\\s+(vector|tma)\\s`).test(l))).toBe(true);
    }
    expect(out).toContain("crossover: TMA from n = 16384");
    expect(out).toMatch(/tuned in [0-9.]+ s: search, [0-9]+ timings \(there are 510 config × n pairs\)/);
    expect(out).toContain(`profile: /fake/cache/${identityKey(H100.identity)}.json`);
    expect(f.saves).toEqual(["1024+128/i64"]);
    expect(f.measuredFor).toEqual([{ device: 0, layout: { dtype: "bf16", nopeElems: 512, ropeElems: 64, locBytes: 8 } }]);
  });

  it("shows GB/s as twice the row bytes moved per call", () => {
    const f = fake({ measure: () => () => 2 });
    expect(f.run("--layout", "u8:528+128", "--loc", "i32")).toBe(0);
    // n = 1024: 2 × 1024 × 656 B in 2 µs = 671.7 GB/s.
    expect(f.stdout.text).toMatch(/\n\s*1024\s+vector\s+1\s+1\s+2\.00\s+672\s+2\.00\s+1\.00×\n/);
  });

  it("tunes the default layouts, both loc dtypes, once per distinct row size", () => {
    const f = fake();
    expect(f.run()).toBe(0);
    expect(f.saves.sort()).toEqual([
      "1024+128/i32", "1024+128/i64", "528+128/i32", "528+128/i64",
      "fp8_ds_mla<bf16:512+64/i32", "fp8_ds_mla<bf16:512+64/i64", "fp8_e4m3<bf16:512+64/i32", "fp8_e4m3<bf16:512+64/i64",
    ]);
    expect(f.measuredFor.length).toBe(8);
    expect(f.stderr.text).toContain("bf16:512+64 and fp16:512+64 have the same bytes per row (1024+128/i32); tuned once for all of them.");
    expect(f.stdout.text).toContain("bf16:512+64 = fp16:512+64, i64 loc");
  });

  it("says when TMA is not available and leaves the other-path columns empty", () => {
    const f = fake({ gpus: [A100] });
    expect(f.run("--layout", "bf16:512+64", "--loc", "i32")).toBe(0);
    expect(f.stdout.text).toContain("crossover: TMA not available");
    expect(f.stdout.text).not.toMatch(/\btma\b/);
    expect(f.stdout.text).toMatch(/\n\s*65536\s+vector\s+\d+\s+\d+\s+[0-9.]+\s+[0-9.]+\s+—\s+—\n/);
  });

  it("says when TMA never wins", () => {
    const f = fake({ measure: () => (cfg, n) => h100Like.truth(cfg, n) * (cfg.path === "tma" ? 1.2 : 1) });
    expect(f.run("--layout", "bf16:512+64", "--loc", "i32")).toBe(0);
    expect(f.stdout.text).toContain("crossover: TMA never wins");
  });

  it("tunes every distinct GPU, and identical GPUs once", () => {
    const twin: GpuInfo = { ...H100, index: 2 };
    const f = fake({ gpus: [H100, A100, twin] });
    expect(f.run("--layout", "bf16:512+64", "--loc", "i64")).toBe(0);
    expect(f.measuredFor.map((m) => m.device)).toEqual([0, 1]);
    expect(f.stderr.text).toContain("GPU 2 is the same setup as GPU 0 (NVIDIA H100 80GB HBM3); one profile serves both.");
    const only = fake({ gpus: [H100, A100, twin] });
    expect(only.run("--layout", "bf16:512+64", "--loc", "i64", "--device", "2")).toBe(0);
    expect(only.measuredFor.map((m) => m.device)).toEqual([2]);
  });

  it("times every config with --exhaustive", () => {
    const f = fake();
    expect(f.run("--layout", "bf16:512+64", "--loc", "i64", "--exhaustive")).toBe(0);
    expect(f.stdout.text).toMatch(/tuned in [0-9.]+ s: exhaustive, 554 timings/);
    expect([...f.stored.values()][0]!.method).toBe("exhaustive");
  });

  it("exits 1 when a timing fails, saying which layout and GPU", () => {
    const f = fake({
      measure: () => () => {
        throw new Error("CUDA error 700: an illegal memory access was encountered");
      },
    });
    expect(f.run("--layout", "u8:528+128", "--loc", "i64")).toBe(1);
    expect(f.stderr.text).toContain(
      "autotune: tuning u8:528+128, i64 loc on GPU 0 failed: CUDA error 700: an illegal memory access was encountered\n",
    );
    expect(f.saves).toEqual([]);
  });

  it("exits 1 when a profile cannot be saved, after tuning the rest", () => {
    const f = fake({ failSave: (key) => key === "1024+128/i32" });
    expect(f.run("--loc", "i32")).toBe(1);
    expect(f.stderr.text).toContain("autotune: could not save the profile for 1024+128/i32: EROFS: read-only file system\n");
    expect(f.stdout.text).toContain("profile: not saved");
    expect(f.saves).toEqual(["528+128/i32", "fp8_e4m3<bf16:512+64/i32", "fp8_ds_mla<bf16:512+64/i32"]);
  });
});

describe("--json", () => {
  it("prints the resulting profile as valid JSON and no tables", () => {
    const f = fake();
    expect(f.run("--json", "--layout", "bf16:512+64", "--layout", "u8:528+128", "--loc", "i64")).toBe(0);
    const profile = ProfileSchema.parse(JSON.parse(f.stdout.text));
    expect(Object.keys(profile.layouts).sort()).toEqual(["1024+128/i64", "528+128/i64"]);
    expect(profile.gpu).toEqual(H100.identity.gpu);
    expect(f.stdout.text).not.toContain("crossover:");
  });

  it("prints one profile per GPU setup, as an array when there are several", () => {
    const f = fake({ gpus: [H100, A100] });
    expect(f.run("--json", "--layout", "bf16:512+64", "--loc", "i32")).toBe(0);
    const value = JSON.parse(f.stdout.text) as unknown[];
    expect(Array.isArray(value)).toBe(true);
    const profiles = value.map((p) => ProfileSchema.parse(p));
    expect(profiles.map((p) => p.gpu.name)).toEqual([H100.name, A100.name]);
    expect(profiles[1]!.layouts["1024+128/i32"]!.buckets.every((b) => b.bestTma === null)).toBe(true);
  });

  it("includes stored layouts that were not tuned again", () => {
    const old = fakeLayoutProfile(3, 16);
    const f = fake({ stored: new Map([[`${identityKey(H100.identity)}|1024+128/i64`, old]]) });
    expect(f.run("--json", "--layout", "bf16:512+64", "--loc", "i64")).toBe(0);
    expect(ProfileSchema.parse(JSON.parse(f.stdout.text)).layouts["1024+128/i64"]).toEqual(old);
    expect(f.measuredFor).toEqual([]);
  });
});

describe("--plot", () => {
  it("writes an SVG with a line per path and the chosen one, crossover marked", () => {
    const file = join(freshDir(), "h100.svg");
    const f = fake({ measure: () => sharpCrossover(768).truth });
    expect(f.run("--layout", "bf16:512+64", "--loc", "i64", "--plot", file)).toBe(0);
    const svg = readFileSync(file, "utf8");
    expect(svg.startsWith("<svg")).toBe(true);
    expect(svg).toContain("vector, best config per n");
    expect(svg).toContain("TMA, best config per n");
    expect(svg).toContain("chosen (what dispatch uses)");
    expect(svg).toContain("TMA from n = 1024");
    expect(svg).toContain('stroke-dasharray="7 4"');
    expect(f.stdout.text).toContain(`plot: ${file}`);
  });

  it("writes one file per layout, named after it, when there are several", () => {
    const dir = freshDir();
    const f = fake();
    expect(f.run("--plot", join(dir, "tune.svg"), "--quiet")).toBe(0);
    expect(readdirSync(dir).sort()).toEqual([
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

  it("has no TMA line where TMA is not available", () => {
    const file = join(freshDir(), "a100.svg");
    const f = fake({ gpus: [A100] });
    expect(f.run("--layout", "bf16:512+64", "--loc", "i64", "--plot", file)).toBe(0);
    const svg = readFileSync(file, "utf8");
    expect(svg).toContain("vector, best config per n");
    expect(svg).not.toContain("TMA, best config per n");
  });
});

describe("existing profiles", () => {
  it("are shown, not tuned again, without --force", () => {
    const f = fake();
    expect(f.run("--layout", "bf16:512+64", "--loc", "i64")).toBe(0);
    expect(f.measuredFor.length).toBe(1);
    const first = f.stdout.text;

    const again = fake({ stored: f.stored });
    expect(again.run("--layout", "bf16:512+64", "--loc", "i64")).toBe(0);
    expect(again.measuredFor).toEqual([]);
    expect(again.saves).toEqual([]);
    expect(again.stdout.text).toMatch(/stored profile, tuned 2026-01-01T.*\(search\); kept, --force tunes again/);
    // The same table as when it was tuned.
    const table = (s: string) => s.split("\n").slice(1, 19).join("\n");
    expect(table(again.stdout.text)).toBe(table(first));
  });

  it("are tuned again and replaced with --force", () => {
    const old = fakeLayoutProfile(3, 16);
    const stored = new Map([[`${identityKey(H100.identity)}|1024+128/i64`, old]]);
    const f = fake({ stored });
    expect(f.run("--layout", "bf16:512+64", "--loc", "i64", "--force")).toBe(0);
    expect(f.measuredFor.length).toBe(1);
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
    expect(lines.map((l) => /^autotune: (\d+)% \(/.exec(l)?.[1])).toEqual(["25", "50", "75", "100"]);
    expect(f.stderr.text).not.toContain("\r");
  });

  it("is one line redrawn in place on a terminal, cleared before each table", () => {
    const f = fake({ tty: true });
    expect(f.run("--layout", "bf16:512+64", "--loc", "i64")).toBe(0);
    const draws = f.stderr.text.split("\r\x1b[K").filter((s) => s !== "");
    expect(draws.length).toBe(17);
    expect(draws.at(-1)).toMatch(/^\[#{20}\] 100%/);
    expect(f.stderr.text.endsWith("\r\x1b[K")).toBe(true);
    expect(f.stderr.text).not.toContain("\n");
    for (const d of draws) expect(d.length).toBeLessThanOrEqual(78);
  });

  it("is off with --quiet and with MLA_KV_QUIET=1", () => {
    const quiet = fake({ tty: true });
    expect(quiet.run("--quiet")).toBe(0);
    expect(quiet.stderr.text).toBe("");
    expect(quiet.stdout.text).toContain("crossover:");
    const env = fake({ env: { MLA_KV_QUIET: "1" } });
    expect(env.run()).toBe(0);
    expect(env.stderr.text).toBe("");
  });

  it("stays on, with one warning, for an MLA_KV_QUIET that is no switch", () => {
    const f = fake({ env: { MLA_KV_QUIET: "loud" } });
    expect(f.run("--layout", "bf16:512+64", "--loc", "i64")).toBe(0);
    const lines = f.stderr.text.trimEnd().split("\n");
    expect(lines[0]).toBe('mla-kv: MLA_KV_QUIET="loud" is neither on (1, true, yes, on) nor off (0, false, no, off or empty); using the default, off');
    expect(lines.slice(1).map((l) => /^autotune: (\d+)% \(/.exec(l)?.[1])).toEqual(["25", "50", "75", "100"]);
  });
});

describe("a run on the user profile store", () => {
  it("backs a whole run end to end", () => {
    const cache = join(freshDir(), "cache");
    const f = fake();
    f.deps.store = userProfileStore({ MLA_KV_CACHE_DIR: cache }, () => {}, new ProfileLookup({ bundledDir: freshDir() }));
    expect(f.run("--layout", "u8:528+128", "--loc", "i32")).toBe(0);
    expect(f.stdout.text).toContain(`profile: ${profilePath(cache, H100.identity)}`);
    const second = fake();
    second.deps.store = userProfileStore({ MLA_KV_CACHE_DIR: cache }, () => {}, new ProfileLookup({ bundledDir: freshDir() }));
    expect(second.run("--layout", "u8:528+128", "--loc", "i32")).toBe(0);
    expect(second.measuredFor).toEqual([]);
    expect(second.stdout.text).toContain("stored profile");
  });
});

describe("the command", () => {
  it("runs as bun cli/autotune.ts: --help exits 0, a bad flag exits 2 without a stack trace", () => {
    const help = Bun.spawnSync(["bun", "cli/autotune.ts", "--help"], { cwd: REPO, env: { ...process.env, MLA_KV_QUIET: "" } });
    expect(help.exitCode).toBe(0);
    expect(help.stdout.toString()).toBe(autotuneHelp());
    const bad = Bun.spawnSync(["bun", "cli/autotune.ts", "--layout", "bf16:512"], { cwd: REPO });
    expect(bad.exitCode).toBe(2);
    expect(bad.stdout.toString()).toBe("");
    expect(bad.stderr.toString()).toBe('autotune: --layout "bf16:512" is not dtype:nope+rope, e.g. bf16:512+64 (or bf16:512+64:fp8_ds_mla); see --help.\n');
  });
});
