import { afterAll, describe, expect, it } from "bun:test";
import { existsSync, lstatSync, mkdtempSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { LockTimeoutError, lockPathFor, pidAlive, tryLock, withLock, type LockInfo } from "../../autotune/lock.ts";
import { describeChild, runInChild } from "../helpers/run_in_child.ts";
import { SPECIAL_FILES } from "../helpers/special_files.ts";

const root = mkdtempSync(join(tmpdir(), "mla-kv-lock-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let seq = 0;
const target = () => join(root, `t${seq++}.json`);

function deadPid(): number {
  const p = Bun.spawnSync(["true"]);
  expect(pidAlive(p.pid)).toBe(false);
  return p.pid;
}

function plant(t: string, info: Partial<LockInfo>): void {
  const full: LockInfo = { pid: process.ppid, host: hostname(), createdAt: Date.now(), token: "planted", ...info };
  writeFileSync(lockPathFor(t), JSON.stringify(full));
}

describe("withLock", () => {
  it("holds <target>.lock with its pid while fn runs and removes it after", () => {
    const t = target();
    const seen = withLock(t, { timeoutMs: 1000, staleMs: 1000 }, () => JSON.parse(readFileSync(lockPathFor(t), "utf8")));
    expect(seen.pid).toBe(process.pid);
    expect(typeof seen.createdAt).toBe("number");
    expect(existsSync(lockPathFor(t))).toBe(false);
  });

  it("releases the lock when fn throws", () => {
    const t = target();
    expect(() =>
      withLock(t, { timeoutMs: 1000, staleMs: 1000 }, () => {
        throw new Error("boom");
      }),
    ).toThrow("boom");
    expect(existsSync(lockPathFor(t))).toBe(false);
  });

  it("times out against a live holder", () => {
    const t = target();
    plant(t, {});
    const start = Date.now();
    expect(() => withLock(t, { timeoutMs: 150, staleMs: 60_000 }, () => 1)).toThrow(LockTimeoutError);
    expect(Date.now() - start).toBeGreaterThanOrEqual(140);
    expect(JSON.parse(readFileSync(lockPathFor(t), "utf8")).token).toBe("planted");
  });

  it("takes over a stale lock whose pid is dead", () => {
    const t = target();
    plant(t, { pid: deadPid() });
    const start = Date.now();
    expect(withLock(t, { timeoutMs: 5000, staleMs: 60_000 }, () => "ran")).toBe("ran");
    expect(Date.now() - start).toBeLessThan(1000);
    expect(existsSync(lockPathFor(t))).toBe(false);
  });

  it("takes over a lock older than staleMs even when its pid is alive", () => {
    const t = target();
    plant(t, { createdAt: Date.now() - 3_600_000 });
    expect(withLock(t, { timeoutMs: 1000, staleMs: 60_000 }, () => "ran")).toBe("ran");
  });

  it("takes over a lock with its own pid left by an earlier process, not one of its own", () => {
    const t = target();
    plant(t, { pid: process.pid, started: Date.now() - 86_400_000 });
    expect(withLock(t, { timeoutMs: 1000, staleMs: 60_000 }, () => "ran")).toBe("ran");
    const mine = target();
    const r = tryLock(mine, { staleMs: 60_000 });
    if (!r.ok) throw new Error("expected the lock");
    const again = tryLock(mine, { staleMs: 60_000 });
    expect(again.ok).toBe(false);
    r.lock.release();
  });

  it("trusts a dead pid only on the host that wrote it", () => {
    const t = target();
    plant(t, { pid: deadPid(), host: "some-other-host" });
    expect(() => withLock(t, { timeoutMs: 100, staleMs: 60_000 }, () => 1)).toThrow(LockTimeoutError);
  });

  it("waits out a young unreadable lock and takes it over once its mtime is old", () => {
    const t = target();
    writeFileSync(lockPathFor(t), "");
    expect(tryLock(t, { staleMs: 60_000 }).ok).toBe(false);
    const old = new Date(Date.now() - 120_000);
    utimesSync(lockPathFor(t), old, old);
    const r = tryLock(t, { staleMs: 60_000 });
    expect(r.ok).toBe(true);
    if (r.ok) r.lock.release();
  });

  it("refuses to wait on a lock this process already holds", () => {
    const t = target();
    expect(() =>
      withLock(t, { timeoutMs: 1000, staleMs: 1000 }, () => withLock(t, { timeoutMs: 1000, staleMs: 1000 }, () => 1)),
    ).toThrow("already held by this process");
    expect(existsSync(lockPathFor(t))).toBe(false);
  });

  it("throws the filesystem error, not a timeout, when the lock cannot be created", () => {
    const t = join(root, "no-such-dir", "x.json");
    expect(() => withLock(t, { timeoutMs: 5000, staleMs: 1000 }, () => 1)).toThrow(/ENOENT/);
    const r = tryLock(t, { staleMs: 1000 });
    expect(r.ok === false && r.reason === "error" && r.error.code === "ENOENT").toBe(true);
  });

  it("keeps 8 processes incrementing one counter from losing an update", async () => {
    const counter = join(root, "counter");
    writeFileSync(counter, "0");
    const worker = join(import.meta.dir, "fixtures", "lock_worker.ts");
    const startAt = Date.now() + 1500;
    const procs = Array.from({ length: 8 }, () =>
      Bun.spawn([process.execPath, worker, counter, "25", String(startAt)], { stdout: "pipe", stderr: "pipe" }),
    );
    const codes = await Promise.all(procs.map((p) => p.exited));
    expect(codes).toEqual(Array(8).fill(0));
    expect(readFileSync(counter, "utf8")).toBe("200");
    expect(existsSync(lockPathFor(counter))).toBe(false);
  });
});

describe("tryLock", () => {
  it("reports the live holder without waiting", () => {
    const t = target();
    plant(t, { pid: process.ppid });
    const r = tryLock(t, { staleMs: 60_000 });
    expect(r.ok).toBe(false);
    if (!r.ok && r.reason === "held") expect(r.holder?.pid).toBe(process.ppid);
    else throw new Error("expected held");
  });

  it("does not remove a lock that was taken over from it on release", () => {
    const t = target();
    const r = tryLock(t, { staleMs: 60_000 });
    if (!r.ok) throw new Error("expected the lock");
    plant(t, { token: "someone-else" });
    r.lock.release();
    expect(JSON.parse(readFileSync(lockPathFor(t), "utf8")).token).toBe("someone-else");
  });
});

/**
 * Runs `body` in a child process that has lock.ts as `L` and is killed after 20 s: a lock that is
 * never given up, or a read that never ends, fails the test instead of hanging the suite.
 */
const CHILD_MS = 20_000;
function inChild(body: string) {
  return runInChild(`const L = await import(root + "/autotune/lock.ts"); ${body}`, {}, { timeoutMs: CHILD_MS });
}
/** The test's own timeout, past the child's bound, so a hang is reported by the child's kill. */
const PAST_CHILD = CHILD_MS + 10_000;

describe("a lock whose time proves nothing", () => {
  // The holder is alive (our parent) and on this host, so only the age can break these locks.
  const holder = () => `"pid": ${process.ppid}, "host": ${JSON.stringify(hostname())}, "token": "planted"`;
  const cases: Array<[string, string]> = [
    ["a createdAt an hour in the future", String(Date.now() + 3_600_000)],
    ["a createdAt too large for a number", "1e400"],
    ["a createdAt that is a string", '"yesterday"'],
    ["a createdAt of null", "null"],
  ];
  for (const [what, createdAt] of cases) {
    it(`takes over a lock with ${what} once it is older than staleMs, though its holder is alive`, () => {
      const t = target();
      writeFileSync(lockPathFor(t), `{${holder()}, "createdAt": ${createdAt}}`);
      const result = inChild(`return L.withLock(${JSON.stringify(t)}, { timeoutMs: 10_000, staleMs: 300 }, () => "ran");`);
      expect(result.value, describeChild(result)).toBe("ran");
      expect(existsSync(lockPathFor(t))).toBe(false);
    }, PAST_CHILD);
  }

  it("takes over a lock whose createdAt and mtime both lie in the future, staleMs after it first saw it", () => {
    const t = target();
    writeFileSync(lockPathFor(t), `{${holder()}, "createdAt": ${Date.now() + 3_600_000}}`);
    const future = new Date(Date.now() + 3_600_000);
    utimesSync(lockPathFor(t), future, future);
    const result = inChild(`return L.withLock(${JSON.stringify(t)}, { timeoutMs: 10_000, staleMs: 300 }, () => "ran");`);
    expect(result.value, describeChild(result)).toBe("ran");
  }, PAST_CHILD);

  it("still counts a lock from the future as held until staleMs has passed", () => {
    const t = target();
    plant(t, { createdAt: Date.now() + 3_600_000 });
    const r = tryLock(t, { staleMs: 60_000 });
    expect(r.ok === false && r.reason).toBe("held");
    expect(JSON.parse(readFileSync(lockPathFor(t), "utf8")).token).toBe("planted");
  });
});

describe("a lock path that is not a regular file", () => {
  for (const { what, make } of SPECIAL_FILES) {
    it(`is reported unusable at once, never followed or read, when it is ${what}`, () => {
      const t = target();
      make(lockPathFor(t));
      const kind = lstatSync(lockPathFor(t));
      // A wait would run into the child's time bound, and a read of /dev/zero would never end.
      const result = inChild(`
        const t = ${JSON.stringify(t)};
        const tried = L.tryLock(t, { staleMs: 1 });
        let thrown;
        try { L.withLock(t, { timeoutMs: 60_000, staleMs: 1 }, () => "ran"); } catch (e) { thrown = { name: e.name, message: e.message }; }
        return { reason: tried.reason, detail: tried.detail, thrown };
      `);
      const value = result.value as { reason: string; detail: string; thrown: { name: string; message: string } };
      expect(value, describeChild(result)).toBeDefined();
      expect(value.reason).toBe("unusable");
      expect(value.detail).toContain(`${lockPathFor(t)} is a`);
      expect(value.detail).toContain("not a regular file");
      expect(value.thrown.name).toBe("LockUnusableError");
      expect(value.thrown.message).toContain("cannot serve as a lock");
      // Left as it was: never broken, renamed or replaced.
      const after = lstatSync(lockPathFor(t));
      expect([after.ino, after.isSymbolicLink(), after.isFIFO(), after.isDirectory()]).toEqual([kind.ino, kind.isSymbolicLink(), kind.isFIFO(), kind.isDirectory()]);
    }, PAST_CHILD);
  }

  it("is reported unusable when it is a dangling symlink", () => {
    const t = target();
    symlinkSync(join(root, "nowhere"), lockPathFor(t));
    const r = tryLock(t, { staleMs: 1 });
    expect(r.ok === false && r.reason).toBe("unusable");
    expect(existsSync(join(root, "nowhere"))).toBe(false);
  });
});
