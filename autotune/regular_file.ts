/**
 * Reading the small files mla-kv keeps (profiles, locks) without trusting what sits at their path.
 *
 * Anything can be there: a FIFO, whose open blocks until a writer comes; a symlink to /dev/zero,
 * which never ends; a directory. So a file is looked at before it is opened, and only a regular
 * file is opened, without blocking (O_NONBLOCK), checked again once open (fstat), and read up to a
 * bound.
 */
import { closeSync, constants, fstatSync, lstatSync, openSync, readSync, statSync, type Stats } from "node:fs";

export type FileRead =
  | {
      ok: true;
      /** The first min(size, maxBytes) bytes. */
      bytes: Uint8Array;
      /** The file's size when opened; more than maxBytes means `bytes` is only its beginning. */
      size: number;
      ino: number;
      mtimeMs: number;
    }
  | {
      ok: false;
      /** missing: nothing there (or a path component is a file); special: not a regular file. */
      why: "missing" | "special" | "error";
      detail: string;
    };

export interface ReadOptions {
  /** Read at most this many bytes. */
  maxBytes: number;
  /** Whether a symlink to a regular file is read (profiles) or refused (locks). */
  followLinks: boolean;
}

/** What kind of file a stat describes, as a sentence fragment: "a FIFO", "a directory". */
export function fileKind(st: Stats): string {
  if (st.isFile()) return "a regular file";
  if (st.isDirectory()) return "a directory";
  if (st.isSymbolicLink()) return "a symbolic link";
  if (st.isFIFO()) return "a FIFO";
  if (st.isSocket()) return "a socket";
  if (st.isCharacterDevice()) return "a character device";
  if (st.isBlockDevice()) return "a block device";
  return "not a regular file";
}

/** Reads the beginning of `path` if, and only if, it is a regular file; never blocks, never throws. */
export function readRegularFile(path: string, opts: ReadOptions): FileRead {
  let before: Stats;
  try {
    before = opts.followLinks ? statSync(path) : lstatSync(path);
  } catch (e) {
    return failure(path, e);
  }
  if (!before.isFile()) return { ok: false, why: "special", detail: `${path} is ${fileKind(before)}, not a regular file` };
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | (opts.followLinks ? 0 : constants.O_NOFOLLOW));
  } catch (e) {
    return failure(path, e);
  }
  try {
    const st = fstatSync(fd);
    // Swapped for something else between the look and the open. Another regular file (a profile
    // renamed into place, a lock released and taken again) is simply what is there now.
    if (!st.isFile()) return { ok: false, why: "special", detail: `${path} is ${fileKind(st)}, not a regular file` };
    const size = Number(st.size);
    const bytes = new Uint8Array(Math.min(size, opts.maxBytes));
    let off = 0;
    while (off < bytes.length) {
      const n = readSync(fd, bytes, off, bytes.length - off, off);
      if (n === 0) break; // shrank while we read: what is there is judged by the caller
      off += n;
    }
    return { ok: true, bytes: bytes.subarray(0, off), size, ino: Number(st.ino), mtimeMs: Number(st.mtimeMs) };
  } catch (e) {
    return failure(path, e);
  } finally {
    closeSync(fd);
  }
}

function failure(path: string, e: unknown): FileRead {
  const err = e as NodeJS.ErrnoException;
  // ENOTDIR: a path component is a regular file, so there is nothing at the path either.
  if (err.code === "ENOENT" || err.code === "ENOTDIR") return { ok: false, why: "missing", detail: path };
  // O_NOFOLLOW on a symlink that appeared after the look.
  if (err.code === "ELOOP") return { ok: false, why: "special", detail: `${path} is a symbolic link, not a regular file` };
  return { ok: false, why: "error", detail: `${err.code ?? "error"}: ${err.message}` };
}
