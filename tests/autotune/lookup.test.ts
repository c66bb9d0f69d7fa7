import { describe, expect, it } from "bun:test";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { profilePath, type Env } from "../../autotune/cache_dir.ts";
import { lockPathFor } from "../../autotune/lock.ts";
import {
  DEFAULT_TUNE_LOCK,
  ProfileLookup,
  autotuneEnabled,
  tuneLockTarget,
  type GetOrTuneOptions,
} from "../../autotune/lookup.ts";
import { SCHEMA_VERSION, identityKey, makeProfile, type GpuIdentity, type LayoutProfile, type Profile } from "../../autotune/profile.ts";
import { readProfileFile } from "../../autotune/store.ts";
import { fakeLayoutProfile, h100, scaleOf as us0 } from "./fixtures/fake.ts";
import { describeChild, runInChild } from "../helpers/run_in_child.ts";
import { SPECIAL_FILES } from "../helpers/special_files.ts";
import { tempDirs } from "../helpers/temp_dirs.ts";

const freshDir = tempDirs("mla-kv-lookup-");

const K1 = "1024+128/i64";
const K2 = "656+0/i32";
const K3 = "1152+0/i64";
const me = h100();
const TUNED_SCALE = 7;

function profileWith(layouts: Record<string, LayoutProfile>, identity: GpuIdentity = me): Profile {
  return makeProfile(identity, layouts);
}

function setup(opts: { cacheDir?: string; env?: Env } = {}) {
  const cache = opts.cacheDir ?? freshDir();
  const bundled = freshDir();
  const warnings: string[] = [];
  const tuned: string[] = [];
  const env: Env = { MLA_KV_CACHE_DIR: cache, ...opts.env };
  const path = profilePath(cache, me);
  let lookup = new ProfileLookup({ bundledDir: bundled });
  const call = (layoutKey: string, extra: Partial<GetOrTuneOptions> = {}) =>
    lookup.getOrTune({
      identity: me,
      layoutKey,
      env,
      warn: (line) => warnings.push(line),
      tune: (_identity, key) => {
        tuned.push(key);
        return fakeLayoutProfile(TUNED_SCALE);
      },
      ...extra,
    });
  return {
    cache,
    bundled,
    warnings,
    tuned,
    env,
    path,
    call,
    /** A new lookup over the same dirs, as a later process would have. */
    restart() {
      lookup = new ProfileLookup({ bundledDir: bundled });
      warnings.length = 0;
      tuned.length = 0;
    },
  };
}

describe("lookup order", () => {
  it("answers from memory before the user file, the user file before bundled, and bundled before tuning", () => {
    const s = setup();
    writeFileSync(s.path, JSON.stringify(profileWith({ [K1]: fakeLayoutProfile(2) })));
    writeFileSync(join(s.bundled, "h100.json"), JSON.stringify(profileWith({ [K1]: fakeLayoutProfile(3), [K2]: fakeLayoutProfile(3) })));

    const a = s.call(K1);
    expect([a.source, us0(a.layout)]).toEqual(["user", 2]);

    // The file changes under us; this process keeps the answer it already gave.
    writeFileSync(s.path, JSON.stringify(profileWith({ [K1]: fakeLayoutProfile(4) })));
    const b = s.call(K1);
    expect([b.source, us0(b.layout)]).toEqual(["memory", 2]);

    const c = s.call(K2);
    expect([c.source, us0(c.layout)]).toEqual(["bundled", 3]);

    const d = s.call(K3);
    expect([d.source, us0(d.layout), d.persisted]).toEqual(["tuned", TUNED_SCALE, true]);
    expect(s.call(K3).source).toBe("memory");
    expect(s.tuned).toEqual([K3]);
    expect(s.warnings).toEqual([]);
  });

  it("finds a tuned layout in the user file after a restart, beside the layouts already there", () => {
    const s = setup();
    writeFileSync(s.path, JSON.stringify(profileWith({ [K1]: fakeLayoutProfile(2) })));
    expect(s.call(K2).source).toBe("tuned");
    s.restart();
    expect(s.call(K2).source).toBe("user");
    expect(s.call(K1).source).toBe("user");
    expect(s.tuned).toEqual([]);
  });

  it("never tunes or writes from lookup()", () => {
    const s = setup();
    const lookup = new ProfileLookup({ bundledDir: s.bundled });
    const r = lookup.lookup({ identity: me, layoutKey: K1, env: s.env, warn: (l) => s.warnings.push(l) });
    expect([r.source, r.layout, r.path]).toEqual(["none", null, s.path]);
    expect(readdirSync(s.cache)).toEqual([]);
  });

  it("never tunes with MLA_KV_AUTOTUNE=0 but still uses stored profiles", () => {
    const s = setup({ env: { MLA_KV_AUTOTUNE: "0" } });
    writeFileSync(s.path, JSON.stringify(profileWith({ [K1]: fakeLayoutProfile(2) })));
    const before = readFileSync(s.path, "utf8");
    expect(s.call(K1).source).toBe("user");
    const r = s.call(K2);
    expect([r.source, r.layout, r.why]).toEqual(["none", null, "autotune-disabled"]);
    expect(s.tuned).toEqual([]);
    expect(readFileSync(s.path, "utf8")).toBe(before);
  });

  it("reads MLA_KV_AUTOTUNE as a switch that is on when unset, and on, with a warning, when it is no switch", () => {
    const warnings: string[] = [];
    const read = (v: string | undefined) => autotuneEnabled({ MLA_KV_AUTOTUNE: v }, (l) => warnings.push(l));
    expect([undefined, "1", "yes", " ON "].map(read)).toEqual([true, true, true, true]);
    expect(["", "0", "false", "OFF", " no "].map(read)).toEqual([false, false, false, false, false]);
    expect(warnings).toEqual([]);
    expect(read("sometimes")).toBe(true);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toStartWith('mla-kv: MLA_KV_AUTOTUNE="sometimes" is neither on');
  });

  it("never tunes, locks or writes while canTune is false", () => {
    const s = setup();
    writeFileSync(join(s.bundled, "h100.json"), JSON.stringify(profileWith({ [K1]: fakeLayoutProfile(3) })));
    expect(s.call(K1, { canTune: false }).source).toBe("bundled");
    const r = s.call(K2, { canTune: false });
    expect([r.source, r.layout, r.why]).toEqual(["none", null, "cannot-tune"]);
    expect(s.tuned).toEqual([]);
    expect(readdirSync(s.cache)).toEqual([]);
    // The same layout is tuned once capture is over.
    expect(s.call(K2).source).toBe("tuned");
  });

  it("rejects a malformed layout key before touching anything", () => {
    const s = setup();
    expect(() => s.call("1024-128")).toThrow(RangeError);
    expect(s.tuned).toEqual([]);
  });

  it("throws when tune returns an invalid layout profile, and saves nothing", () => {
    const s = setup();
    const bad = fakeLayoutProfile();
    bad.buckets.pop();
    bad.buckets.shift();
    expect(() => s.call(K1, { tune: () => bad })).toThrow(/invalid layout profile/);
    expect(existsSync(s.path)).toBe(false);
    expect(existsSync(lockPathFor(tuneLockTarget(s.path, K1)))).toBe(false);
  });
});

describe("force", () => {
  it("tunes again when the user file already has the layout, replacing it there and keeping the other layouts", () => {
    const s = setup();
    writeFileSync(s.path, JSON.stringify(profileWith({ [K1]: fakeLayoutProfile(2), [K2]: fakeLayoutProfile(3) })));
    const r = s.call(K1, { force: true });
    expect([r.source, us0(r.layout), r.persisted]).toEqual(["tuned", TUNED_SCALE, true]);
    expect(s.tuned).toEqual([K1]);
    const onDisk = readProfileFile(s.path, me);
    if (!onDisk.ok) throw new Error(`unreadable after a forced tune: ${onDisk.reason}`);
    expect([us0(onDisk.profile.layouts[K1]!), us0(onDisk.profile.layouts[K2]!)]).toEqual([TUNED_SCALE, 3]);
    expect(s.warnings).toEqual([]);
  });

  it("tunes again over this process's memory, and later calls answer with the new profile", () => {
    const s = setup();
    expect(s.call(K1, { tune: () => fakeLayoutProfile(4) }).source).toBe("tuned");
    expect(us0(s.call(K1).layout)).toBe(4);
    expect(us0(s.call(K1, { force: true }).layout)).toBe(TUNED_SCALE);
    const after = s.call(K1);
    expect([after.source, us0(after.layout)]).toEqual(["memory", TUNED_SCALE]);
  });

  it("tunes even with MLA_KV_AUTOTUNE=0, which only turns first-use tuning off", () => {
    const s = setup({ env: { MLA_KV_AUTOTUNE: "0" } });
    expect(s.call(K1).why).toBe("autotune-disabled");
    expect(s.call(K1, { force: true }).source).toBe("tuned");
    expect(s.tuned).toEqual([K1]);
  });

  it("never tunes while canTune is false, answering from the stored profile as without force", () => {
    const s = setup();
    writeFileSync(s.path, JSON.stringify(profileWith({ [K1]: fakeLayoutProfile(2) })));
    const r = s.call(K1, { force: true, canTune: false });
    expect([r.source, us0(r.layout)]).toEqual(["user", 2]);
    expect(s.call(K2, { force: true, canTune: false }).why).toBe("cannot-tune");
    expect(s.tuned).toEqual([]);
  });

  it("still takes turns on the tune lock, and does not tune while another process holds it past the wait", () => {
    const s = setup();
    plantLiveHolder(lockPathFor(tuneLockTarget(s.path, K1)));
    const r = s.call(K1, { force: true, tuneLock: { timeoutMs: 30, staleMs: 60_000 } });
    expect([r.source, r.why]).toEqual(["none", "tune-lock-timeout"]);
    expect(s.tuned).toEqual([]);
  });
});

describe("bad user profiles", () => {
  const good = () => JSON.stringify(profileWith({ [K2]: fakeLayoutProfile(2) }), null, 2);
  const cases: Array<[string, () => string, RegExp]> = [
    ["corrupt", () => "{{{{ not json", /is corrupt/],
    ["cut-off", () => good().slice(0, 500), /is corrupt/],
    ["empty", () => "", /is empty \(0 bytes\)/],
    ["schema-invalid", () => JSON.stringify({ ...JSON.parse(good()), layouts: { [K2]: { tuneMs: 1 } } }), /is invalid/],
    ["foreign-GPU", () => JSON.stringify(profileWith({ [K1]: fakeLayoutProfile(2) }, h100({ gpu: { name: "NVIDIA A100-SXM4-80GB", ccMajor: 8, smCount: 108 } }))), /for another setup \(GPU NVIDIA A100-SXM4-80GB ≠ NVIDIA H100/],
    ["other-driver", () => JSON.stringify(profileWith({ [K1]: fakeLayoutProfile(2) }, h100({ gpu: { driverVersion: 12080 } }))), /for another setup \(driver 12080 ≠ 13000\)/],
    ["other-library-build", () => JSON.stringify(profileWith({ [K1]: fakeLayoutProfile(2) }, h100({ libraryBuildId: "build-old" }))), /for another setup \(library build build-old ≠ build-aaaa1111\)/],
    ["previous-schema", () => JSON.stringify({ ...JSON.parse(good()), schemaVersion: SCHEMA_VERSION - 1 }), new RegExp(`for another setup \\(schema version ${SCHEMA_VERSION - 1} ≠ ${SCHEMA_VERSION}\\)`)],
    ["future-schema", () => JSON.stringify({ ...JSON.parse(good()), schemaVersion: SCHEMA_VERSION + 1 }), new RegExp(`from a newer package \\(schema version ${SCHEMA_VERSION + 1} is newer`)],
  ];

  for (const [what, content, warning] of cases) {
    it(`replaces a ${what} profile and warns once`, () => {
      const s = setup();
      writeFileSync(s.path, content());
      const r = s.call(K1);
      expect([r.source, us0(r.layout), r.persisted]).toEqual(["tuned", TUNED_SCALE, true]);
      expect(s.warnings.length).toBe(1);
      expect(s.warnings[0]).toMatch(warning);
      expect(s.warnings[0]).toContain(s.path);
      expect(s.warnings[0]).toEndWith("re-tuning and replacing it");

      const onDisk = readProfileFile(s.path, me);
      if (!onDisk.ok) throw new Error(`still bad: ${onDisk.reason}`);
      expect(Object.keys(onDisk.profile.layouts)).toEqual([K1]);

      expect(s.call(K1).source).toBe("memory");
      expect(s.call(K3).source).toBe("tuned");
      expect(s.warnings.length).toBe(1);
      s.restart();
      expect(s.call(K1).source).toBe("user");
      expect(s.warnings).toEqual([]);
    });
  }

  it("says it falls back to a bundled profile when that answers instead of a bad user file", () => {
    const s = setup();
    writeFileSync(s.path, "{{{{");
    writeFileSync(join(s.bundled, "h100.json"), JSON.stringify(profileWith({ [K1]: fakeLayoutProfile(3) })));
    expect(s.call(K1).source).toBe("bundled");
    expect(s.tuned).toEqual([]);
    expect(s.warnings).toHaveLength(1);
    expect(s.warnings[0]).toMatch(/is corrupt .*; using the bundled profile$/);
  });

  it("says it ignores a bad profile, and leaves it, when it may not tune", () => {
    const s = setup({ env: { MLA_KV_AUTOTUNE: "0" } });
    writeFileSync(s.path, "{{{{");
    expect(s.call(K1).source).toBe("none");
    expect(s.call(K2).source).toBe("none");
    expect(s.warnings).toHaveLength(1);
    expect(s.warnings[0]).toMatch(/is corrupt .*; ignoring it$/);
    expect(readFileSync(s.path, "utf8")).toBe("{{{{");
  });
});

describe("unwritable cache dir", () => {
  const places: Array<[string, () => string]> = [
    ["under a regular file (read-only)", () => join(freshDir(), "file", "cache")],
    ["that is a file", () => join(freshDir(), "file")],
  ];
  for (const [what, place] of places) {
    it(`works in memory with one warning for a cache dir ${what}`, () => {
      const cache = place();
      const file = cache.endsWith("file") ? cache : join(cache, "..");
      writeFileSync(file, "a regular file");
      const s = setup({ cacheDir: cache });

      const a = s.call(K1);
      expect([a.source, a.persisted, us0(a.layout)]).toEqual(["tuned", false, TUNED_SCALE]);
      expect(s.warnings).toHaveLength(1);
      expect(s.warnings[0]).toMatch(/cannot save profiles in .*; keeping tuned configs in memory/);

      expect(s.call(K2).source).toBe("tuned");
      expect(s.call(K1).source).toBe("memory");
      expect(s.call(K2).source).toBe("memory");
      expect(s.tuned).toEqual([K1, K2]);
      expect(s.warnings).toHaveLength(1);
      expect(readFileSync(file, "utf8")).toBe("a regular file");
    });
  }
});

describe("a relative MLA_KV_CACHE_DIR", () => {
  it("is refused with one warning, and profiles go to the default dir instead", () => {
    const home = freshDir();
    const s = setup({ env: { MLA_KV_CACHE_DIR: "relative-cache", HOME: home } });
    expect(s.call(K1)).toMatchObject({ source: "tuned", persisted: true });
    expect(s.call(K2).source).toBe("tuned");
    expect(s.warnings).toEqual([
      `mla-kv: MLA_KV_CACHE_DIR="relative-cache" is a relative path; using ${join(home, ".cache", "mla-kv")} (give an absolute path)`,
    ]);
    expect(readProfileFile(profilePath(join(home, ".cache", "mla-kv"), me), me).ok).toBe(true);
  });
});

describe("bundled profiles", () => {
  it("skips a bundled profile for this GPU with another driver, with one warning, and tunes", () => {
    const s = setup();
    const file = join(s.bundled, "h100-old-driver.json");
    writeFileSync(file, JSON.stringify(profileWith({ [K1]: fakeLayoutProfile(3), [K2]: fakeLayoutProfile(3) }, h100({ gpu: { driverVersion: 12080 } }))));
    expect(s.call(K1).source).toBe("tuned");
    expect(s.call(K2).source).toBe("tuned");
    expect(s.warnings).toEqual([`mla-kv: bundled profile ${file} not used: for another setup (driver 12080 ≠ 13000)`]);
  });

  it("skips a bundled profile for this GPU with another library build, with one warning", () => {
    const s = setup();
    writeFileSync(join(s.bundled, "x.json"), JSON.stringify(profileWith({ [K1]: fakeLayoutProfile(3) }, h100({ libraryBuildId: "b2" }))));
    expect(s.call(K1).source).toBe("tuned");
    expect(s.warnings).toHaveLength(1);
    expect(s.warnings[0]).toContain("library build b2 ≠ build-aaaa1111");
  });

  it("passes over bundled profiles of other GPU models silently", () => {
    const s = setup();
    writeFileSync(join(s.bundled, "a100.json"), JSON.stringify(profileWith({ [K1]: fakeLayoutProfile(3) }, h100({ gpu: { name: "NVIDIA A100-SXM4-80GB", ccMajor: 8, smCount: 108 } }))));
    writeFileSync(join(s.bundled, "README.md"), "not a profile");
    expect(s.call(K1).source).toBe("tuned");
    expect(s.warnings).toEqual([]);
  });

  it("uses the matching one among several bundled profiles", () => {
    const s = setup();
    writeFileSync(join(s.bundled, "a.json"), JSON.stringify(profileWith({ [K1]: fakeLayoutProfile(3) }, h100({ gpu: { smCount: 114, name: "NVIDIA H100 PCIe" } }))));
    writeFileSync(join(s.bundled, `${identityKey(me)}.json`), JSON.stringify(profileWith({ [K1]: fakeLayoutProfile(5) })));
    const r = s.call(K1);
    expect([r.source, us0(r.layout)]).toEqual(["bundled", 5]);
    expect(s.warnings).toEqual([]);
  });

  it("warns once about a corrupt bundled profile and carries on", () => {
    const s = setup();
    writeFileSync(join(s.bundled, "broken.json"), '{"schemaVersion": 1, "gpu": ');
    expect(s.call(K1).source).toBe("tuned");
    expect(s.call(K2).source).toBe("tuned");
    expect(s.warnings).toHaveLength(1);
    expect(s.warnings[0]).toMatch(/bundled profile .*broken\.json not used: corrupt/);
  });
});

describe("tuning across processes", () => {
  it("tunes once when 8 processes of one identity ask for the same layout at once", async () => {
    const s = setup();
    const worker = join(import.meta.dir, "fixtures", "tune_worker.ts");
    const startAt = Date.now() + 1500;
    const procs = Array.from({ length: 8 }, () =>
      Bun.spawn([process.execPath, worker, s.cache, K1, String(startAt), "300"], { stdout: "pipe", stderr: "pipe" }),
    );
    const codes = await Promise.all(procs.map((p) => p.exited));
    const errs = await Promise.all(procs.map((p) => new Response(p.stderr).text()));
    expect({ codes, errs }).toEqual({ codes: Array(8).fill(0), errs: Array(8).fill("") });
    const outs = await Promise.all(procs.map((p) => new Response(p.stdout).text()));
    const sources = outs.map((o) => JSON.parse(o).source as string).sort();
    expect(sources).toEqual(["tuned", ...Array(7).fill("user")]);
    expect(readdirSync(s.cache)).toEqual([`${identityKey(me)}.json`]);
  });

  it("does not tune, answers with no layout and warns once, even asked twice, when the tune lock is held past the wait", () => {
    const s = setup();
    const lock = lockPathFor(tuneLockTarget(s.path, K1));
    plantLiveHolder(lock);
    const first = s.call(K1, { tuneLock: { timeoutMs: 60, staleMs: 60_000 } });
    const second = s.call(K1, { tuneLock: { timeoutMs: 60, staleMs: 60_000 } });
    for (const r of [first, second]) expect([r.source, r.layout, r.why, r.path]).toEqual(["none", null, "tune-lock-timeout", s.path]);
    expect(s.tuned).toEqual([]);
    expect(s.warnings).toEqual([
      "mla-kv: another process has been tuning 1024+128/i64 for more than 0.06 s; " +
        "using the built-in rule in this process (its profile will be read on the next start)",
    ]);
    expect(JSON.parse(readFileSync(lock, "utf8")).token).toBe("held");
    expect(existsSync(s.path)).toBe(false);
  });

  it("takes over, and tunes, a tune lock it waited out once its holder has died", async () => {
    const s = setup();
    const lock = lockPathFor(tuneLockTarget(s.path, K1));
    const holder = Bun.spawn(["sleep", "60"]);
    try {
      writeFileSync(lock, JSON.stringify({ pid: holder.pid, host: hostname(), createdAt: Date.now(), token: "held" }));
      expect(s.call(K1, { tuneLock: { timeoutMs: 30, staleMs: 60_000 } }).why).toBe("tune-lock-timeout");
    } finally {
      holder.kill();
    }
    await holder.exited;
    expect(s.call(K1, { tuneLock: { timeoutMs: 30, staleMs: 60_000 } }).source).toBe("tuned");
    expect(s.tuned).toEqual([K1]);
  });

  it("still tunes another layout while one layout's tune lock is held", () => {
    const s = setup();
    plantLiveHolder(lockPathFor(tuneLockTarget(s.path, K1)));
    expect(s.call(K1, { tuneLock: { timeoutMs: 30, staleMs: 60_000 } }).why).toBe("tune-lock-timeout");
    expect(s.call(K2, { tuneLock: { timeoutMs: 30, staleMs: 60_000 } }).source).toBe("tuned");
    expect(s.tuned).toEqual([K2]);
  });

  it("uses the profile the holder saved when it appears after the wait ran out", () => {
    const s = setup();
    const lock = lockPathFor(tuneLockTarget(s.path, K1));
    plantLiveHolder(lock);
    expect(s.call(K1, { tuneLock: { timeoutMs: 30, staleMs: 60_000 } }).layout).toBeNull();
    writeFileSync(s.path, JSON.stringify(profileWith({ [K1]: fakeLayoutProfile(5) })));
    const r = s.call(K1, { tuneLock: { timeoutMs: 30, staleMs: 60_000 } });
    expect([r.source, us0(r.layout)]).toEqual(["user", 5]);
    expect(s.tuned).toEqual([]);
    expect(s.warnings).toHaveLength(1);
  });

  it("reads the profile of a process that was still tuning when this one gave up, once restarted", async () => {
    const s = setup();
    const holder = Bun.spawn([process.execPath, "-e", holderScript(s.cache, K1)], { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
    const out = holder.stdout.getReader();
    let said = "";
    while (!said.includes("tuning\n")) {
      const chunk = await out.read();
      if (chunk.done) throw new Error(`holder exited early: ${await new Response(holder.stderr).text()}`);
      said += new TextDecoder().decode(chunk.value);
    }
    try {
      const r = s.call(K1, { tuneLock: { timeoutMs: 60, staleMs: 60_000 } });
      expect([r.source, r.layout, r.why]).toEqual(["none", null, "tune-lock-timeout"]);
      expect(s.warnings).toHaveLength(1);
    } finally {
      holder.stdin.end();
    }
    expect(await holder.exited).toBe(0);
    for (;;) {
      const chunk = await out.read();
      if (chunk.done) break;
      said += new TextDecoder().decode(chunk.value);
    }
    expect(JSON.parse(said.slice(said.indexOf("\n") + 1))).toEqual({ source: "tuned", persisted: true });

    s.restart();
    const after = s.call(K1, { tuneLock: { timeoutMs: 60, staleMs: 60_000 } });
    expect([after.source, us0(after.layout)]).toEqual(["user", HOLDER_SCALE]);
    expect(s.tuned).toEqual([]);
    expect(s.warnings).toEqual([]);
  });

  it("takes over the tune lock of a process that died while tuning", () => {
    const s = setup();
    const dead = Bun.spawnSync(["true"]).pid;
    writeFileSync(lockPathFor(tuneLockTarget(s.path, K1)), JSON.stringify({ pid: dead, host: hostname(), createdAt: Date.now(), token: "t" }));
    // A wait too short to outlast any holder: only taking the lock over lets this tune.
    expect(s.call(K1, { tuneLock: { timeoutMs: 1, staleMs: 60_000 } }).source).toBe("tuned");
    expect(s.warnings).toEqual([]);
  });
});

describe("lock paths that are not regular files", () => {
  // Each in a child killed after 20 s, as the process that meets them would hang if it waited on
  // them or read them: tuning twice in it must not be slowed by the lock at all.
  const tuneTwice = (cache: string, bundled: string) =>
    runInChild(`
      const { ProfileLookup } = await import(root + "/autotune/lookup.ts");
      const { fakeLayoutProfile, h100 } = await import(root + "/tests/autotune/fixtures/fake.ts");
      const warnings = [];
      const lookup = new ProfileLookup({ bundledDir: ${JSON.stringify(bundled)} });
      const ask = (key) => lookup.getOrTune({
        identity: h100(), layoutKey: key, env: { MLA_KV_CACHE_DIR: ${JSON.stringify(cache)} },
        warn: (line) => warnings.push(line), tune: () => fakeLayoutProfile(${TUNED_SCALE}),
        tuneLock: { timeoutMs: 60_000, staleMs: 60_000 },
      });
      const sources = [${JSON.stringify(K1)}, ${JSON.stringify(K1)}].map((k) => ask(k).source);
      return { sources, warnings };
    `, {}, { timeoutMs: 20_000 });

  for (const { what, make } of SPECIAL_FILES) {
    it(`tunes without a tune lock that is ${what}, saying so once`, () => {
      const s = setup();
      const lock = lockPathFor(tuneLockTarget(s.path, K1));
      make(lock);
      const result = tuneTwice(s.cache, s.bundled);
      const value = result.value as { sources: string[]; warnings: string[] };
      expect(value, describeChild(result)).toBeDefined();
      expect(value.sources).toEqual(["tuned", "memory"]);
      expect(value.warnings).toHaveLength(1);
      expect(value.warnings[0]).toStartWith(`mla-kv: ${lock} is `);
      expect(value.warnings[0]).toEndWith(`cannot serve as a lock (remove it); tuning ${K1} without it`);
      expect(readProfileFile(s.path, me).ok).toBe(true);
    }, 30_000);

    it(`keeps the tune in memory, saying so once, when the profile's write lock is ${what}`, () => {
      const s = setup();
      make(`${s.path}.lock`);
      const result = tuneTwice(s.cache, s.bundled);
      expect(result.value, describeChild(result)).toEqual({
        sources: ["tuned", "memory"],
        warnings: [expect.stringContaining("cannot serve as a lock (remove it)); keeping tuned configs in memory for this process")],
      });
      expect(existsSync(s.path)).toBe(false);
    }, 30_000);
  }
});

describe("MLA_KV_TUNE_WAIT_MS", () => {
  it("sets how long a process waits for another one's tune", () => {
    const s = setup({ env: { MLA_KV_TUNE_WAIT_MS: " 40 " } });
    plantLiveHolder(lockPathFor(tuneLockTarget(s.path, K1)));
    const r = s.call(K1);
    expect([r.source, r.why]).toEqual(["none", "tune-lock-timeout"]);
    expect(s.tuned).toEqual([]);
    expect(s.warnings).toHaveLength(1);
    expect(s.warnings[0]).toContain("tuning 1024+128/i64 for more than 0.04 s;");
  });

  it("gives way to an explicit tuneLock", () => {
    const s = setup({ env: { MLA_KV_TUNE_WAIT_MS: "soon" } });
    plantLiveHolder(lockPathFor(tuneLockTarget(s.path, K1)));
    expect(s.call(K1, { tuneLock: { timeoutMs: 20, staleMs: 60_000 } }).why).toBe("tune-lock-timeout");
    expect(s.warnings).toHaveLength(1);
    expect(s.warnings[0]).toContain("for more than 0.02 s;");
  });

  for (const [bad, why] of [["soon", "is not a whole number"], ["-5", "is out of range"], ["1.5", "is not a whole number"], ["1e12", "is out of range"]]) {
    it(`warns once about ${JSON.stringify(bad)} and waits the default instead`, () => {
      const s = setup({ env: { MLA_KV_TUNE_WAIT_MS: bad! } });
      expect(s.call(K1).source).toBe("tuned");
      expect(s.call(K2).source).toBe("tuned");
      expect(s.warnings).toEqual([
        `mla-kv: MLA_KV_TUNE_WAIT_MS=${JSON.stringify(bad)} ${why}; expected a whole number from 0 to 86400000; using the default, ${DEFAULT_TUNE_LOCK.timeoutMs}`,
      ]);
    });
  }

  it("does not wait at all for another process's tune when it is 0", () => {
    const s = setup();
    plantLiveHolder(lockPathFor(tuneLockTarget(s.path, K1)));
    // In a child killed after 20 s: waiting the default minute would run past it.
    const result = runInChild(`
      const { ProfileLookup } = await import(root + "/autotune/lookup.ts");
      const { fakeLayoutProfile, h100 } = await import(root + "/tests/autotune/fixtures/fake.ts");
      const warnings = [];
      const r = new ProfileLookup({ bundledDir: ${JSON.stringify(s.bundled)} }).getOrTune({
        identity: h100(), layoutKey: ${JSON.stringify(K1)}, warn: (l) => warnings.push(l), tune: () => fakeLayoutProfile(1),
        env: { MLA_KV_CACHE_DIR: ${JSON.stringify(s.cache)}, MLA_KV_TUNE_WAIT_MS: "0" },
      });
      return { source: r.source, why: r.why, warnings };
    `, {}, { timeoutMs: 20_000 });
    expect(result.value, describeChild(result)).toEqual({
      source: "none",
      why: "tune-lock-timeout",
      warnings: [expect.stringContaining("tuning 1024+128/i64 for more than 0 s; using the built-in rule")],
    });
  }, 30_000);

  it("waits no longer than a minute by default, and judges a lock stale only well after that", () => {
    expect(DEFAULT_TUNE_LOCK.timeoutMs).toBeLessThanOrEqual(60_000);
    expect(DEFAULT_TUNE_LOCK.staleMs).toBeGreaterThanOrEqual(5 * DEFAULT_TUNE_LOCK.timeoutMs);
  });
});

/** A tune lock held by a live process of this host (our parent), as a process mid-tune holds it. */
function plantLiveHolder(lock: string): void {
  writeFileSync(lock, JSON.stringify({ pid: process.ppid, host: hostname(), createdAt: Date.now(), token: "held" }));
}

const HOLDER_SCALE = 5;

/**
 * A process that tunes `key` through getOrTune and, mid-tune (lock held), prints "tuning" and
 * blocks until its stdin closes; then prints how its tune ended as JSON.
 */
function holderScript(cache: string, key: string): string {
  const mod = (p: string) => JSON.stringify(join(import.meta.dir, p));
  return `
    import { readFileSync, writeSync } from "node:fs";
    import { ProfileLookup } from ${mod("../../autotune/lookup.ts")};
    import { fakeLayoutProfile, h100 } from ${mod("fixtures/fake.ts")};
    const r = new ProfileLookup({ bundledDir: ${JSON.stringify(join(cache, "no-bundled"))} }).getOrTune({
      identity: h100(),
      layoutKey: ${JSON.stringify(key)},
      env: { MLA_KV_CACHE_DIR: ${JSON.stringify(cache)} },
      warn: (line) => { throw new Error(line); },
      tune: () => {
        writeSync(1, "tuning\\n");
        readFileSync(0);
        return fakeLayoutProfile(${HOLDER_SCALE});
      },
    });
    writeSync(1, JSON.stringify({ source: r.source, persisted: r.persisted }) + "\\n");
  `;
}
