/**
 * Reading and writing one profile file. Reads never throw, never block and never trust a bad file;
 * writes are atomic (temp file + rename) and merge with what other processes wrote meanwhile.
 *
 * Because every write is a rename of a whole file, a file that does not parse was not cut off by
 * a crash mid-write: something else wrote it, and it is simply corrupt.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, statSync, unlinkSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { randomBytes } from "node:crypto";
import { LockTimeoutError, withLock } from "./lock.ts";
import { readRegularFile } from "./regular_file.ts";
import {
  ProfileHeaderSchema,
  ProfileSchema,
  SCHEMA_VERSION,
  describeIssues,
  identityMismatch,
  identityOf,
  type GpuIdentity,
  type Profile,
  type ProfileHeader,
} from "./profile.ts";

export type ReadFailureReason =
  | "missing"
  | "empty"
  | "corrupt"
  | "invalid"
  | "foreign"
  | "future-schema"
  | "unreadable";

export type ReadResult =
  | { ok: true; profile: Profile }
  | {
      ok: false;
      reason: ReadFailureReason;
      detail: string;
      /** Whose file it is, when that could be told (foreign, future-schema, invalid). */
      header?: ProfileHeader;
    };

export type WriteResult =
  | {
      ok: true;
      /** What the file now holds: the layouts written plus those kept from the file. */
      profile: Profile;
      /** Layouts that came from the file already there. */
      keptLayouts: string[];
    }
  | { ok: false; reason: "invalid" | "unwritable" | "busy"; detail: string };

export interface WriteOptions {
  /** Lock settings for the read-merge-rename section, which lasts milliseconds. */
  lock?: { timeoutMs: number; staleMs: number };
}

// Profiles are a few kB per layout; anything this large was not written by us.
const MAX_PROFILE_BYTES = 8 * 1024 * 1024;

const DEFAULT_WRITE_LOCK = { timeoutMs: 20_000, staleMs: 10_000 };

/**
 * The profile at `path`, checked against `identity`. Only a regular file is read (a FIFO, a
 * directory or a symlink to a device is "unreadable"), without blocking and at most 8 MiB of it.
 */
export function readProfileFile(path: string, identity: GpuIdentity): ReadResult {
  const read = readRegularFile(path, { maxBytes: MAX_PROFILE_BYTES, followLinks: true });
  if (!read.ok) return { ok: false, reason: read.why === "missing" ? "missing" : "unreadable", detail: read.detail };
  if (read.size > MAX_PROFILE_BYTES) {
    return { ok: false, reason: "corrupt", detail: `file is ${read.size} bytes, more than a profile can be` };
  }
  return parseProfileBytes(read.bytes, identity);
}

/** The checks of readProfileFile, on bytes already in hand. */
export function parseProfileBytes(bytes: Uint8Array, identity: GpuIdentity): ReadResult {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return { ok: false, reason: "corrupt", detail: "not UTF-8 text" };
  }
  if (text.trim() === "") return { ok: false, reason: "empty", detail: bytes.length === 0 ? "0 bytes" : "only blank space" };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    return { ok: false, reason: "corrupt", detail: (e as Error).message };
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return { ok: false, reason: "invalid", detail: "not a JSON object" };
  }
  const version = (value as { schemaVersion?: unknown }).schemaVersion;
  if (typeof version === "number" && version > SCHEMA_VERSION) {
    const header = ProfileHeaderSchema.safeParse(value);
    return {
      ok: false,
      reason: "future-schema",
      detail: `schema version ${version} is newer than this package understands`,
      ...(header.success ? { header: header.data } : {}),
    };
  }
  const header = ProfileHeaderSchema.safeParse(value);
  if (!header.success) return { ok: false, reason: "invalid", detail: describeIssues(header.error) };
  const mismatch = identityMismatch(header.data, identity);
  if (mismatch !== null) return { ok: false, reason: "foreign", detail: mismatch, header: header.data };
  const full = ProfileSchema.safeParse(value);
  if (!full.success) {
    return { ok: false, reason: "invalid", detail: describeIssues(full.error), header: header.data };
  }
  return { ok: true, profile: full.data };
}

/**
 * Validates `profile`, then under `<path>.lock` re-reads the file and, when it is valid and of the
 * same identity, keeps its other layouts (the ones in `profile` win). The result is written to a
 * temp file in the same dir, fsynced, and renamed over `path`, so readers only ever see a whole
 * file. Environment failures (read-only or missing dir, dir is a file, lock held too long) come
 * back as `{ ok: false }`; nothing throws.
 */
export function writeProfileFile(path: string, profile: Profile, opts: WriteOptions = {}): WriteResult {
  const checked = ProfileSchema.safeParse(profile);
  if (!checked.success) return { ok: false, reason: "invalid", detail: describeIssues(checked.error) };
  const incoming = checked.data;
  const dir = dirname(path);

  const prepared = ensureDir(dir);
  if (prepared !== null) return { ok: false, reason: "unwritable", detail: prepared };

  try {
    return withLock(path, opts.lock ?? DEFAULT_WRITE_LOCK, () => {
      const current = readProfileFile(path, identityOf(incoming));
      let merged: Profile = incoming;
      let keptLayouts: string[] = [];
      if (current.ok) {
        keptLayouts = Object.keys(current.profile.layouts).filter((k) => !(k in incoming.layouts));
        merged = {
          ...incoming,
          createdAt: current.profile.createdAt,
          layouts: { ...current.profile.layouts, ...incoming.layouts },
        };
        // Both halves were valid on their own; re-check the union rather than assume it.
        const again = ProfileSchema.safeParse(merged);
        if (!again.success) return { ok: false, reason: "invalid", detail: describeIssues(again.error) } as const;
        merged = again.data;
      }
      const written = atomicWrite(path, `${JSON.stringify(merged, null, 2)}\n`);
      if (written !== null) return { ok: false, reason: "unwritable", detail: written } as const;
      return { ok: true, profile: merged, keptLayouts } as const;
    });
  } catch (e) {
    if (e instanceof LockTimeoutError) return { ok: false, reason: "busy", detail: e.message };
    const err = e as NodeJS.ErrnoException;
    return { ok: false, reason: "unwritable", detail: `${err.code ?? "error"}: ${err.message}` };
  }
}

/** null when `dir` exists (or was made) and is a directory; else why not. */
export function ensureDir(dir: string): string | null {
  try {
    mkdirSync(dir, { recursive: true });
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    return `cannot create ${dir}: ${err.code ?? "error"}: ${err.message}`;
  }
  try {
    if (!statSync(dir).isDirectory()) return `${dir} is not a directory`;
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    return `cannot stat ${dir}: ${err.code ?? "error"}: ${err.message}`;
  }
  return null;
}

/** null on success; else why the write failed (the target is left untouched). */
function atomicWrite(path: string, text: string): string | null {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
  let fd: number | null = null;
  try {
    fd = openSync(tmp, "wx", 0o644);
    const data = Buffer.from(text, "utf8");
    let off = 0;
    while (off < data.length) off += writeSync(fd, data, off, data.length - off);
    fsyncSync(fd);
    closeSync(fd);
    fd = null;
    renameSync(tmp, path);
  } catch (e) {
    if (fd !== null) {
      try {
        closeSync(fd);
      } catch {
        // already failing
      }
    }
    try {
      unlinkSync(tmp);
    } catch {
      // never created
    }
    const err = e as NodeJS.ErrnoException;
    return `${err.code ?? "error"}: ${err.message}`;
  }
  syncDir(dir);
  return null;
}

// Makes the rename itself durable; some filesystems cannot fsync a directory, which is harmless.
function syncDir(dir: string): void {
  let fd: number | null = null;
  try {
    fd = openSync(dir, "r");
    fsyncSync(fd);
  } catch {
    // not supported here
  } finally {
    if (fd !== null) {
      try {
        closeSync(fd);
      } catch {
        // nothing to do
      }
    }
  }
}
