/**
 * A cross-process lock: the file `<target>.lock`, created exclusively, holding who owns it.
 *
 * Synchronous on purpose: the callers (profile writes, first-use tuning) sit on a synchronous
 * dispatch path, and a held lock is expected to be short or to end in a result worth waiting for.
 *
 * A lock that cannot be proven alive is broken once it is older than staleMs. Its age is what its
 * holder wrote (createdAt) when that is a time in the past; a createdAt in the future or that is
 * no time at all proves nothing, and then the file's mtime tells the age, or, when that lies in
 * the future too, how long this process has been looking at it.
 *
 * A lock path that is not a regular file (a symlink, a directory, a FIFO, a device) is never
 * followed, opened or read: it cannot be judged, so it is reported as unusable at once instead of
 * being waited on.
 */
import { closeSync, linkSync, lstatSync, openSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { hostname } from "node:os";
import { randomBytes } from "node:crypto";
import { readRegularFile } from "./regular_file.ts";

export interface LockInfo {
  pid: number;
  host: string;
  /** ms since the epoch, from the holder's clock. */
  createdAt: number;
  /** Unique per acquisition, so a holder never removes a lock that is no longer its own. */
  token: string;
  /** When the holder's process started (ms since the epoch); tells a reused pid from a live one. */
  started?: number;
}

export interface LockOptions {
  /** Give up waiting after this long. */
  timeoutMs: number;
  /** A lock older than this is taken over even if its holder seems alive (hung, or pid reused). */
  staleMs: number;
  /** Base delay between attempts; jittered so waiters do not retry in lock-step. */
  pollMs?: number;
}

export interface HeldLock {
  readonly lockPath: string;
  readonly info: LockInfo;
  /** Removes the lock file if it is still ours. Idempotent. */
  release(): void;
}

export type TryLockResult =
  | { ok: true; lock: HeldLock }
  | { ok: false; reason: "held"; holder: LockInfo | null; ageMs: number }
  | { ok: false; reason: "error"; error: NodeJS.ErrnoException }
  /** Something that is not a lock file sits at the lock path; `detail` says what. */
  | { ok: false; reason: "unusable"; detail: string };

export class LockTimeoutError extends Error {
  constructor(
    readonly lockPath: string,
    readonly holder: LockInfo | null,
    readonly waitedMs: number,
  ) {
    super(
      `timed out after ${waitedMs} ms waiting for ${lockPath}` +
        (holder ? ` (held by pid ${holder.pid} on ${holder.host})` : ""),
    );
    this.name = "LockTimeoutError";
  }
}

/** The lock path holds something that cannot be a lock (see {@link TryLockResult}). */
export class LockUnusableError extends Error {
  constructor(
    readonly lockPath: string,
    readonly detail: string,
  ) {
    super(`${detail}, so it cannot serve as a lock (remove it)`);
    this.name = "LockUnusableError";
  }
}

// Lock files hold one short JSON object; anything longer is garbage and is not read further.
const MAX_LOCK_BYTES = 4096;

// A breaker holds the guard for a few syscalls; anything older was left by a crash.
const GUARD_STALE_MS = 5_000;

const heldHere = new Set<string>();
// process.uptime() is process-wide, so worker threads of one process agree on this to within ms.
const PROCESS_STARTED = Math.round(Date.now() - process.uptime() * 1000);
const SAME_START_MS = 2_000;
const sleepCell = new Int32Array(new SharedArrayBuffer(4));

export function lockPathFor(target: string): string {
  return `${target}.lock`;
}

/** One attempt, never waits; a stale lock is broken and the attempt retried once. */
export function tryLock(target: string, opts: { staleMs: number }): TryLockResult {
  const lockPath = lockPathFor(target);
  for (let attempt = 0; attempt < 2; attempt++) {
    const created = createExclusive(lockPath);
    if (created.ok) return { ok: true, lock: created.lock };
    if (created.error.code !== "EEXIST") return { ok: false, reason: "error", error: created.error };

    const seen = inspect(lockPath);
    if (seen === null) continue; // released between our attempt and the look: just retry
    if ("unusable" in seen) return { ok: false, reason: "unusable", detail: seen.unusable };
    if (!isStale(seen, opts.staleMs, lockPath)) {
      return { ok: false, reason: "held", holder: seen.info, ageMs: seen.ageMs };
    }
    if (!breakStale(lockPath, seen)) {
      return { ok: false, reason: "held", holder: seen.info, ageMs: seen.ageMs };
    }
  }
  const seen = inspect(lockPath);
  if (seen !== null && "unusable" in seen) return { ok: false, reason: "unusable", detail: seen.unusable };
  return { ok: false, reason: "held", holder: seen?.info ?? null, ageMs: seen?.ageMs ?? 0 };
}

/**
 * Runs fn while holding `<target>.lock`, waiting up to timeoutMs for it.
 * Throws LockTimeoutError on timeout, LockUnusableError at once when the lock path is not a regular
 * file, or the filesystem error when the lock cannot be created at all (missing or read-only dir);
 * fn's own errors propagate after the lock is released.
 */
export function withLock<T>(target: string, opts: LockOptions, fn: () => T): T {
  const lockPath = lockPathFor(target);
  // Waiting on ourselves would only end at the timeout.
  if (heldHere.has(lockPath)) throw new Error(`${lockPath} is already held by this process`);
  const start = Date.now();
  const poll = Math.max(1, opts.pollMs ?? 15);
  for (;;) {
    const r = tryLock(target, { staleMs: opts.staleMs });
    if (r.ok) {
      try {
        return fn();
      } finally {
        r.lock.release();
      }
    }
    if (r.reason === "error") throw r.error;
    if (r.reason === "unusable") throw new LockUnusableError(lockPath, r.detail);
    const waited = Date.now() - start;
    if (waited >= opts.timeoutMs) throw new LockTimeoutError(lockPath, r.holder, waited);
    sleepMs(Math.min(poll + Math.random() * poll, opts.timeoutMs - waited));
  }
}

export function sleepMs(ms: number): void {
  if (ms > 0) Atomics.wait(sleepCell, 0, 0, ms);
}

/** Whether a process with this pid exists on this host (EPERM: it exists, just not ours). */
export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

function createExclusive(lockPath: string): { ok: true; lock: HeldLock } | { ok: false; error: NodeJS.ErrnoException } {
  const info: LockInfo = {
    pid: process.pid,
    host: hostname(),
    createdAt: Date.now(),
    token: randomBytes(8).toString("hex"),
    started: PROCESS_STARTED,
  };
  let fd: number;
  try {
    fd = openSync(lockPath, "wx", 0o644);
  } catch (e) {
    return { ok: false, error: e as NodeJS.ErrnoException };
  }
  try {
    writeSync(fd, JSON.stringify(info));
  } catch (e) {
    closeSync(fd);
    tryUnlink(lockPath);
    return { ok: false, error: e as NodeJS.ErrnoException };
  }
  closeSync(fd);
  heldHere.add(lockPath);
  let released = false;
  return {
    ok: true,
    lock: {
      lockPath,
      info,
      release() {
        if (released) return;
        released = true;
        heldHere.delete(lockPath);
        const now = inspect(lockPath);
        if (now !== null && !("unusable" in now) && now.info?.token === info.token) tryUnlink(lockPath);
      },
    },
  };
}

interface Seen {
  raw: string;
  info: LockInfo | null;
  ino: number;
  mtimeMs: number;
  ageMs: number;
}

/** The lock file as it is now; null when there is none; unusable when it is not a regular file. */
function inspect(lockPath: string): Seen | { unusable: string } | null {
  const read = readRegularFile(lockPath, { maxBytes: MAX_LOCK_BYTES, followLinks: false });
  if (!read.ok) return read.why === "missing" ? null : { unusable: read.detail };
  const raw = new TextDecoder().decode(read.bytes);
  const info = read.size > MAX_LOCK_BYTES ? null : parseInfo(raw);
  const { ino, mtimeMs } = read;
  return { raw, info, ino, mtimeMs, ageMs: ageOf(info, mtimeMs, `${lockPath}\0${ino}\0${raw}`) };
}

// When this process first saw a lock whose age nothing else can tell, by path, inode and content.
const firstSeen = new Map<string, number>();
const FIRST_SEEN_KEPT = 256;

/**
 * How old a lock is. A parseable lock carries its own birth time, which survives clock-coarse
 * mtimes; an unparseable one is one whose holder died between create and write, and only its
 * mtime tells. Times in the future (a skewed clock, a garbage value) are never trusted.
 */
function ageOf(info: LockInfo | null, mtimeMs: number, identity: string): number {
  const now = Date.now();
  const claimed = info?.createdAt;
  if (claimed !== undefined && Number.isFinite(claimed) && claimed <= now) return now - claimed;
  if (Number.isFinite(mtimeMs) && mtimeMs <= now) return now - mtimeMs;
  let seen = firstSeen.get(identity);
  if (seen === undefined) {
    if (firstSeen.size >= FIRST_SEEN_KEPT) firstSeen.clear();
    firstSeen.set(identity, (seen = now));
  }
  return now - seen;
}

function parseInfo(raw: string): LockInfo | null {
  try {
    const v = JSON.parse(raw) as Partial<LockInfo> | null;
    if (
      v !== null &&
      typeof v === "object" &&
      typeof v.pid === "number" &&
      typeof v.host === "string" &&
      typeof v.createdAt === "number" &&
      typeof v.token === "string"
    ) {
      const info: LockInfo = { pid: v.pid, host: v.host, createdAt: v.createdAt, token: v.token };
      if (typeof v.started === "number") info.started = v.started;
      return info;
    }
  } catch {
    // fall through
  }
  return null;
}

function isStale(seen: Seen, staleMs: number, lockPath: string): boolean {
  if (seen.ageMs > staleMs) return true;
  const info = seen.info;
  if (info === null) return false; // probably being written right now
  // A pid only means something on the host that wrote it (shared cache dirs over NFS exist).
  if (info.host !== hostname()) return false;
  // Our own pid: this process (maybe another thread of it) holds it, unless it was written by an
  // earlier process that had the same pid, as happens to containers restarted in place.
  if (info.pid === process.pid) {
    if (heldHere.has(lockPath) || info.started === undefined) return false;
    return Math.abs(info.started - PROCESS_STARTED) > SAME_START_MS;
  }
  return !pidAlive(info.pid);
}

/**
 * Removes a lock judged stale, without ever removing a lock that a live process took meanwhile.
 * Breakers serialise on `<lock>.break`, re-check under it that the file is still the one they
 * judged, and move it aside (rename) before a final check, restoring it if it changed.
 */
function breakStale(lockPath: string, judged: Seen): boolean {
  const guardPath = `${lockPath}.break`;
  let guardFd: number;
  try {
    guardFd = openSync(guardPath, "wx", 0o644);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") {
      try {
        const st = lstatSync(guardPath);
        if (ageOf(null, Number(st.mtimeMs), `${guardPath}\0${Number(st.ino)}`) > GUARD_STALE_MS) tryUnlink(guardPath);
      } catch {
        // gone already
      }
    }
    return false;
  }
  closeSync(guardFd);
  try {
    const now = inspect(lockPath);
    if (now === null) return true; // its holder released it: the lock is free
    if ("unusable" in now) return false;
    if (now.raw !== judged.raw || now.ino !== judged.ino || now.mtimeMs !== judged.mtimeMs) return false;
    const aside = `${lockPath}.stale.${process.pid}.${randomBytes(6).toString("hex")}`;
    try {
      renameSync(lockPath, aside);
    } catch {
      return false;
    }
    // Unreadable counts as changed: it is put back.
    const moved = inspect(aside);
    if (moved === null || "unusable" in moved || moved.raw !== judged.raw) {
      try {
        linkSync(aside, lockPath); // fails rather than overwrite if someone locked meanwhile
      } catch {
        // someone else holds it now; they will see their own token on release
      }
      tryUnlink(aside);
      return false;
    }
    tryUnlink(aside);
    return true;
  } finally {
    tryUnlink(guardPath);
  }
}

function tryUnlink(p: string): void {
  try {
    unlinkSync(p);
  } catch {
    // already gone
  }
}
