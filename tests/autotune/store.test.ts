import { describe, expect, it } from "bun:test";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { isAbsolute, join } from "node:path";
import { cacheDir, profilePath } from "../../autotune/cache_dir.ts";
import { ProfileSchema, identityKey, makeProfile, type Profile } from "../../autotune/profile.ts";
import { readProfileFile, writeProfileFile } from "../../autotune/store.ts";
import { fakeLayoutProfile, h100 } from "./fixtures/fake.ts";
import { describeChild, runInChild } from "../helpers/run_in_child.ts";
import { SPECIAL_FILES } from "../helpers/special_files.ts";
import { tempDirs } from "../helpers/temp_dirs.ts";

const freshDir = tempDirs("mla-kv-store-");

const K1 = "1024+128/i64";
const K2 = "656+0/i32";
const me = h100();

function profileWith(keys: string[], identity = me): Profile {
  return makeProfile(identity, Object.fromEntries(keys.map((k, i) => [k, fakeLayoutProfile(1 + i)])));
}

function fileWith(text: string | Uint8Array): string {
  const p = join(freshDir(), "p.json");
  writeFileSync(p, text);
  return p;
}

describe("cacheDir", () => {
  it("prefers MLA_KV_CACHE_DIR, then XDG_CACHE_HOME/mla-kv, then ~/.cache/mla-kv", () => {
    const home = () => "/nowhere";
    expect(cacheDir({ MLA_KV_CACHE_DIR: "/a", XDG_CACHE_HOME: "/x", HOME: "/h" }, home)).toBe("/a");
    expect(cacheDir({ XDG_CACHE_HOME: "/x", HOME: "/h" }, home)).toBe("/x/mla-kv");
    expect(cacheDir({ HOME: "/h" }, home)).toBe("/h/.cache/mla-kv");
    expect(cacheDir({}, home)).toBe("/nowhere/.cache/mla-kv");
  });

  it("ignores empty variables and a relative XDG_CACHE_HOME, and expands a literal ~", () => {
    const home = () => "/nowhere";
    expect(cacheDir({ MLA_KV_CACHE_DIR: "", XDG_CACHE_HOME: "", HOME: "/h" }, home)).toBe("/h/.cache/mla-kv");
    expect(cacheDir({ XDG_CACHE_HOME: "rel/cache", HOME: "/h" }, home)).toBe("/h/.cache/mla-kv");
    expect(cacheDir({ MLA_KV_CACHE_DIR: "~/mk", HOME: "/h" }, home)).toBe("/h/mk");
  });

  it("refuses a relative MLA_KV_CACHE_DIR with one warning, and uses the default dir", () => {
    const home = () => "/nowhere";
    const lines: string[] = [];
    const warn = (line: string) => void lines.push(line);
    expect(cacheDir({ MLA_KV_CACHE_DIR: "rel/cache", HOME: "/h" }, home, warn)).toBe("/h/.cache/mla-kv");
    expect(cacheDir({ MLA_KV_CACHE_DIR: "rel/cache", HOME: "/h" }, home, warn)).toBe("/h/.cache/mla-kv");
    expect(cacheDir({ MLA_KV_CACHE_DIR: "./c", XDG_CACHE_HOME: "/x" }, home, warn)).toBe("/x/mla-kv");
    expect(lines).toEqual([
      'mla-kv: MLA_KV_CACHE_DIR="rel/cache" is a relative path; using /h/.cache/mla-kv (give an absolute path)',
      'mla-kv: MLA_KV_CACHE_DIR="./c" is a relative path; using /x/mla-kv (give an absolute path)',
    ]);
  });

  it("is absolute even when HOME is relative", () => {
    expect(isAbsolute(cacheDir({ HOME: "." }, () => "."))).toBe(true);
    expect(isAbsolute(cacheDir({ MLA_KV_CACHE_DIR: "~/p", HOME: "rel" }, () => "rel"))).toBe(true);
  });

  it("names one file per identity key", () => {
    expect(profilePath("/c", me)).toBe(`/c/${identityKey(me)}.json`);
  });
});

describe("readProfileFile", () => {
  it("reads back a valid profile", () => {
    const p = fileWith(JSON.stringify(profileWith([K1])));
    const r = readProfileFile(p, me);
    expect(r.ok && Object.keys(r.profile.layouts)).toEqual([K1]);
  });

  const cases: Array<[string, () => string, string, RegExp?]> = [
    ["missing", () => join(freshDir(), "none.json"), "missing"],
    ["under a regular file", () => join(fileWith("x"), "p.json"), "missing"],
    ["a directory", () => freshDir(), "unreadable", /is a directory, not a regular file/],
    ["empty", () => fileWith(""), "empty", /0 bytes/],
    ["only blank space", () => fileWith(" \n\t\n"), "empty", /only blank space/],
    ["all NUL bytes", () => fileWith("\0".repeat(64)), "corrupt"],
    ["cut off", () => fileWith(JSON.stringify(profileWith([K1])).slice(0, 700)), "corrupt"],
    ["garbage", () => fileWith("this is not json {"), "corrupt"],
    ["balanced but broken JSON", () => fileWith('{"schemaVersion": 1, oops}'), "corrupt"],
    ["not UTF-8", () => fileWith(new Uint8Array([0x7b, 0xff, 0xfe, 0x7d])), "corrupt", /UTF-8/],
    ["a JSON array", () => fileWith("[1,2]"), "invalid"],
    ["schema-invalid", () => fileWith(JSON.stringify({ ...profileWith([K1]), layouts: { [K1]: { tuneMs: 1 } } })), "invalid"],
    ["for another GPU", () => fileWith(JSON.stringify(profileWith([K1], h100({ gpu: { name: "NVIDIA A100-SXM4-80GB" } })))), "foreign", /GPU/],
    ["for another driver", () => fileWith(JSON.stringify(profileWith([K1], h100({ gpu: { driverVersion: 12080 } })))), "foreign", /driver 12080 ≠ 13000/],
    ["for another library build", () => fileWith(JSON.stringify(profileWith([K1], h100({ libraryBuildId: "other" })))), "foreign", /library build other ≠/],
    ["from a future schema", () => fileWith(JSON.stringify({ ...profileWith([K1]), schemaVersion: 99, newField: {} })), "future-schema", /schema version 99/],
  ];
  for (const [what, make, reason, detail] of cases) {
    it(`reports a file that is ${what} as ${reason} without throwing`, () => {
      const r = readProfileFile(make(), me);
      expect(r.ok).toBe(false);
      if (r.ok) return;
      expect(r.reason).toBe(reason as typeof r.reason);
      if (detail) expect(r.detail).toMatch(detail);
    });
  }

  it("attributes a file from another package version that has extra GPU fields, rather than calling it invalid", () => {
    const other = { ...profileWith([K1], h100({ packageVersion: "0.9.0" })) };
    const r = readProfileFile(fileWith(JSON.stringify({ ...other, gpu: { ...other.gpu, uuid: "GPU-1234" } })), me);
    expect(r.ok === false && [r.reason, r.detail]).toEqual(["foreign", "package version 0.9.0 ≠ 0.1.0"]);
  });

  it("does not read a file far larger than any profile", () => {
    const r = readProfileFile(fileWith(" ".repeat(9 * 1024 * 1024)), me);
    expect(r.ok === false && r.reason).toBe("corrupt");
  });
});

describe("writeProfileFile", () => {
  it("writes a file that reads back equal, leaving no temp or lock files", () => {
    const dir = freshDir();
    const p = profilePath(dir, me);
    const prof = profileWith([K1]);
    const w = writeProfileFile(p, prof);
    expect(w.ok).toBe(true);
    const r = readProfileFile(p, me);
    expect(r.ok && r.profile).toEqual(prof);
    expect(readdirSync(dir)).toEqual([`${identityKey(me)}.json`]);
  });

  it("creates the cache dir when it does not exist yet", () => {
    const p = profilePath(join(freshDir(), "a", "b"), me);
    expect(writeProfileFile(p, profileWith([K1])).ok).toBe(true);
    expect(existsSync(p)).toBe(true);
  });

  it("keeps the other layouts of a valid file of the same identity and replaces rewritten ones", () => {
    const p = profilePath(freshDir(), me);
    const first = makeProfile(me, { [K1]: fakeLayoutProfile(1), [K2]: fakeLayoutProfile(1) });
    expect(writeProfileFile(p, first).ok).toBe(true);
    const second = makeProfile(me, { [K2]: fakeLayoutProfile(5) });
    const w = writeProfileFile(p, second);
    expect(w.ok && w.keptLayouts).toEqual([K1]);
    const r = readProfileFile(p, me);
    if (!r.ok) throw new Error(r.detail);
    expect(r.profile.layouts[K1]).toEqual(first.layouts[K1]!);
    expect(r.profile.layouts[K2]).toEqual(second.layouts[K2]!);
    expect(r.profile.createdAt).toBe(first.createdAt);
  });

  it("replaces a file of another identity instead of merging with it", () => {
    const p = profilePath(freshDir(), me);
    writeFileSync(p, JSON.stringify(profileWith([K1], h100({ gpu: { driverVersion: 12080 } }))));
    const w = writeProfileFile(p, profileWith([K2]));
    expect(w.ok && w.keptLayouts).toEqual([]);
    const r = readProfileFile(p, me);
    expect(r.ok && Object.keys(r.profile.layouts)).toEqual([K2]);
  });

  it("replaces a corrupt file", () => {
    const p = profilePath(freshDir(), me);
    writeFileSync(p, "{garbage");
    expect(writeProfileFile(p, profileWith([K1])).ok).toBe(true);
    expect(readProfileFile(p, me).ok).toBe(true);
  });

  it("refuses an invalid profile and leaves the file as it was", () => {
    const p = profilePath(freshDir(), me);
    const good = profileWith([K1]);
    writeProfileFile(p, good);
    const before = readFileSync(p, "utf8");
    const bad = profileWith([K2]);
    bad.layouts[K2]!.buckets.reverse();
    const w = writeProfileFile(p, bad);
    expect(w.ok === false && w.reason).toBe("invalid");
    expect(readFileSync(p, "utf8")).toBe(before);
  });

  it("returns unwritable, without throwing, for a cache dir under a regular file", () => {
    const file = fileWith("not a dir");
    const w = writeProfileFile(profilePath(join(file, "cache"), me), profileWith([K1]));
    expect(w.ok).toBe(false);
    if (!w.ok) {
      expect(w.reason).toBe("unwritable");
      expect(w.detail).toMatch(/ENOTDIR|EEXIST/);
    }
  });

  it("returns unwritable, without throwing, for a cache dir that is a file", () => {
    const file = fileWith("not a dir");
    const w = writeProfileFile(profilePath(file, me), profileWith([K1]));
    expect(w.ok === false && w.reason).toBe("unwritable");
    expect(readFileSync(file, "utf8")).toBe("not a dir");
  });

  it("returns busy when the file stays locked by a live process", () => {
    const p = profilePath(freshDir(), me);
    writeFileSync(`${p}.lock`, JSON.stringify({ pid: process.ppid, host: "elsewhere", createdAt: Date.now(), token: "t" }));
    const w = writeProfileFile(p, profileWith([K1]), { lock: { timeoutMs: 50, staleMs: 60_000 } });
    expect(w.ok === false && w.reason).toBe("busy");
    expect(existsSync(p)).toBe(false);
  });

  it("takes over, once older than its staleMs, a write lock whose createdAt lies in the future", () => {
    const p = profilePath(freshDir(), me);
    const future = { pid: process.ppid, host: hostname(), createdAt: Date.now() + 3_600_000, token: "t" };
    writeFileSync(`${p}.lock`, JSON.stringify(future));
    // In a child killed after 20 s: were the lock never judged stale, the write would wait forever.
    const result = runInChild(`
      const { writeProfileFile } = await import(root + "/autotune/store.ts");
      const { makeProfile } = await import(root + "/autotune/profile.ts");
      const { fakeLayoutProfile, h100 } = await import(root + "/tests/autotune/fixtures/fake.ts");
      const w = writeProfileFile(${JSON.stringify(p)}, makeProfile(h100(), { ${JSON.stringify(K1)}: fakeLayoutProfile(1) }),
        { lock: { timeoutMs: 10_000, staleMs: 300 } });
      return w.ok ? "written" : w.reason + ": " + w.detail;
    `, {}, { timeoutMs: 20_000 });
    expect(result.value, describeChild(result)).toBe("written");
    expect(readProfileFile(p, me).ok).toBe(true);
    expect(existsSync(`${p}.lock`)).toBe(false);
  }, 30_000);

  it("ends with one valid profile holding every layout when 8 processes tune different layouts at once", async () => {
    const dir = freshDir();
    const worker = join(import.meta.dir, "fixtures", "tune_worker.ts");
    const keys = Array.from({ length: 8 }, (_, i) => `${512 * (i + 1)}+128/i64`);
    const startAt = Date.now() + 1500;
    const procs = keys.map((k) =>
      Bun.spawn([process.execPath, worker, dir, k, String(startAt), "20"], { stdout: "pipe", stderr: "pipe" }),
    );
    const codes = await Promise.all(procs.map((p) => p.exited));
    const outs = await Promise.all(procs.map((p) => new Response(p.stdout).text()));
    const errs = await Promise.all(procs.map((p) => new Response(p.stderr).text()));
    expect({ codes, errs }).toEqual({ codes: Array(8).fill(0), errs: Array(8).fill("") });
    for (const line of outs) expect(JSON.parse(line)).toMatchObject({ source: "tuned", persisted: true, warnings: [] });

    const p = profilePath(dir, me);
    const r = readProfileFile(p, me);
    if (!r.ok) throw new Error(`${r.reason}: ${r.detail}`);
    expect(Object.keys(r.profile.layouts).sort()).toEqual([...keys].sort());
    expect(ProfileSchema.safeParse(JSON.parse(readFileSync(p, "utf8"))).success).toBe(true);
    expect(readdirSync(dir)).toEqual([`${identityKey(me)}.json`]);
  });
});

describe("a path that is not a regular file", () => {
  // In children killed after 20 s: an open of a FIFO blocks, and a read of /dev/zero never ends.
  const inChild = (body: string) =>
    runInChild(`
      const { readProfileFile, writeProfileFile } = await import(root + "/autotune/store.ts");
      const { makeProfile } = await import(root + "/autotune/profile.ts");
      const { fakeLayoutProfile, h100 } = await import(root + "/tests/autotune/fixtures/fake.ts");
      ${body}
    `, {}, { timeoutMs: 20_000 });

  for (const { what, make, followed } of SPECIAL_FILES) {
    it(`reads a profile path that is ${what} as unreadable, without opening it`, () => {
      const p = profilePath(freshDir(), me);
      make(p);
      const result = inChild(`return readProfileFile(${JSON.stringify(p)}, h100());`);
      expect(result.value, describeChild(result)).toMatchObject({ ok: false, reason: "unreadable" });
      expect((result.value as { detail: string }).detail).toBe(`${p} is ${followed}, not a regular file`);
    }, 30_000);

    it(`does not save, and says why at once, when the write lock is ${what}`, () => {
      const p = profilePath(freshDir(), me);
      make(`${p}.lock`);
      const result = inChild(`
        const w = writeProfileFile(${JSON.stringify(p)}, makeProfile(h100(), { ${JSON.stringify(K1)}: fakeLayoutProfile(1) }),
          { lock: { timeoutMs: 60_000, staleMs: 1 } });
        return w;
      `);
      expect(result.value, describeChild(result)).toMatchObject({ ok: false, reason: "unwritable" });
      expect((result.value as { detail: string }).detail).toContain(`${p}.lock is a`);
      expect((result.value as { detail: string }).detail).toContain("cannot serve as a lock");
      expect(existsSync(p)).toBe(false);
    }, 30_000);
  }
});
