/**
 * Reading and writing one profile file. Reads never throw and never trust a bad file; writes are
 * atomic (temp file + rename) and merge with what other processes wrote meanwhile.
 */
import {
  closeSync,
  fstatSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { basename, dirname, join } from "node:path";
import { randomBytes } from "node:crypto";
import { LockTimeoutError, withLock } from "./lock.ts";
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
  | "corrupt"
  | "truncated"
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

export function readProfileFile(path: string, identity: GpuIdentity): ReadResult {
  let bytes: Uint8Array;
  try {
    bytes = readBounded(path);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    // ENOTDIR: a path component is a regular file, so there is no profile there either.
    if (err.code === "ENOENT" || err.code === "ENOTDIR") return { ok: false, reason: "missing", detail: path };
    if (err.code === "EFBIG") return { ok: false, reason: "corrupt", detail: err.message };
    return { ok: false, reason: "unreadable", detail: `${err.code ?? "error"}: ${err.message}` };
  }
  return parseProfileBytes(bytes, identity);
}

/** The checks of readProfileFile, on bytes already in hand. */
export function parseProfileBytes(bytes: Uint8Array, identity: GpuIdentity): ReadResult {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return { ok: false, reason: "corrupt", detail: "not UTF-8 text" };
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    const shape = classifyBadJson(text);
    return {
      ok: false,
      // An empty file is a write cut off before its first byte.
      reason: shape === "corrupt" ? "corrupt" : "truncated",
      detail: shape === "empty" ? "empty file" : `${shape === "truncated" ? "cut off: " : ""}${(e as Error).message}`,
    };
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

function readBounded(path: string): Uint8Array {
  const fd = openSync(path, "r");
  try {
    const size = fstatSync(fd).size;
    if (size > MAX_PROFILE_BYTES) {
      const err: NodeJS.ErrnoException = new Error(`file is ${size} bytes, more than a profile can be`);
      err.code = "EFBIG";
      throw err;
    }
    const buf = new Uint8Array(size);
    let off = 0;
    while (off < size) {
      const n = readSync(fd, buf, off, size - off, off);
      if (n === 0) break; // shrank while we read: parse what is there, the checks will judge it
      off += n;
    }
    return buf.subarray(0, off);
  } finally {
    closeSync(fd);
  }
}

/**
 * Tells a file cut off mid-write (a valid beginning of a JSON object that just stops) from one
 * that is garbage. Trailing NULs count as nothing: a crash after the size was extended but before
 * the data landed leaves exactly that.
 */
export function classifyBadJson(text: string): "empty" | "truncated" | "corrupt" {
  const body = text.replace(/^\uFEFF/, "").replace(/[\s\0]+$/, "").trimStart();
  if (body === "") return "empty";
  if (body[0] !== "{") return "corrupt";
  return jsonPrefixState(body) === "prefix" ? "truncated" : "corrupt";
}

const NUMBER_RE = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const NUMBER_PREFIX_RE = /^-?(?:0|[1-9][0-9]*)?(?:\.[0-9]*)?(?:[eE][+-]?[0-9]*)?$/;
const LITERALS = ["true", "false", "null"];

/** Whether `s` is a whole JSON value, a proper prefix of one, or neither. */
export function jsonPrefixState(s: string): "complete" | "prefix" | "invalid" {
  type Expect = "value" | "value-or-close" | "key" | "key-or-close" | "colon" | "comma-or-close" | "end";
  const stack: string[] = [];
  let expect: Expect = "value";
  const afterValue = (): Expect => (stack.length === 0 ? "end" : "comma-or-close");
  let i = 0;
  while (i < s.length) {
    const c = s[i]!;
    if (c === " " || c === "\t" || c === "\n" || c === "\r") {
      i++;
      continue;
    }
    if (expect === "end") return "invalid";
    if (expect === "colon") {
      if (c !== ":") return "invalid";
      expect = "value";
      i++;
      continue;
    }
    if (expect === "comma-or-close") {
      if (c === ",") expect = stack[stack.length - 1] === "}" ? "key" : "value";
      else if (c === stack[stack.length - 1]) {
        stack.pop();
        expect = afterValue();
      } else return "invalid";
      i++;
      continue;
    }
    if (expect === "key" || expect === "key-or-close") {
      if (expect === "key-or-close" && c === "}") {
        stack.pop();
        expect = afterValue();
        i++;
        continue;
      }
      if (c !== '"') return "invalid";
      const end = scanString(s, i);
      if (end < 0) return end === -1 ? "prefix" : "invalid";
      i = end;
      expect = "colon";
      continue;
    }
    // a value is expected
    if (expect === "value-or-close" && c === "]") {
      stack.pop();
      expect = afterValue();
      i++;
    } else if (c === "{" || c === "[") {
      stack.push(c === "{" ? "}" : "]");
      expect = c === "{" ? "key-or-close" : "value-or-close";
      i++;
    } else if (c === '"') {
      const end = scanString(s, i);
      if (end < 0) return end === -1 ? "prefix" : "invalid";
      i = end;
      expect = afterValue();
    } else if (c === "-" || (c >= "0" && c <= "9")) {
      let j = i;
      while (j < s.length && /[-+0-9.eE]/.test(s[j]!)) j++;
      const token = s.slice(i, j);
      NUMBER_RE.lastIndex = i;
      const m = NUMBER_RE.exec(s);
      const whole = m !== null && m[0].length === token.length;
      if (j === s.length) return whole && stack.length === 0 ? "complete" : NUMBER_PREFIX_RE.test(token) ? "prefix" : "invalid";
      if (!whole) return "invalid";
      i = j;
      expect = afterValue();
    } else if (c >= "a" && c <= "z") {
      let j = i;
      while (j < s.length && s[j]! >= "a" && s[j]! <= "z") j++;
      const token = s.slice(i, j);
      if (j === s.length) {
        if (LITERALS.includes(token)) return stack.length === 0 ? "complete" : "prefix";
        return LITERALS.some((l) => l.startsWith(token)) ? "prefix" : "invalid";
      }
      if (!LITERALS.includes(token)) return "invalid";
      i = j;
      expect = afterValue();
    } else return "invalid";
  }
  return expect === "end" ? "complete" : "prefix";
}

/** Index after the closing quote of the string opening at `start`; -1 if the text ends inside it, -2 if it is malformed. */
function scanString(s: string, start: number): number {
  let i = start + 1;
  while (i < s.length) {
    const c = s.charCodeAt(i);
    if (c === 0x22) return i + 1;
    if (c < 0x20) return -2;
    if (c === 0x5c) {
      const e = s[i + 1];
      if (e === undefined) return -1;
      if (e === "u") {
        const hex = s.slice(i + 2, i + 6);
        if (!/^[0-9a-fA-F]*$/.test(hex)) return -2;
        if (hex.length < 4) return -1;
        i += 6;
        continue;
      }
      if (!'"\\/bfnrt'.includes(e)) return -2;
      i += 2;
      continue;
    }
    i++;
  }
  return -1;
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
