/**
 * Things that are not regular files, for the tests of code that must refuse to open or read them:
 * a FIFO (an open for reading blocks until a writer comes), symlinks to endless devices, a
 * directory. Each maker creates its thing at the path it is given.
 */
import { mkdirSync, symlinkSync } from "node:fs";

/** Makes a FIFO at `path`. */
export function mkfifo(path: string): void {
  const made = Bun.spawnSync(["mkfifo", path], { stderr: "pipe" });
  if (made.exitCode !== 0) throw new Error(`mkfifo ${path}: ${made.stderr.toString()}`);
}

export interface SpecialFile {
  /** What it is, for a test's name. */
  what: string;
  /** Makes it at `path`. */
  make(path: string): void;
  /** What a reader that follows symlinks finds there. */
  followed: "a FIFO" | "a character device" | "a directory";
}

export const SPECIAL_FILES: readonly SpecialFile[] = [
  { what: "a FIFO", make: mkfifo, followed: "a FIFO" },
  { what: "a symlink to /dev/zero", make: (p) => symlinkSync("/dev/zero", p), followed: "a character device" },
  { what: "a symlink to /dev/urandom", make: (p) => symlinkSync("/dev/urandom", p), followed: "a character device" },
  {
    what: "a symlink to a FIFO",
    make: (p) => {
      mkfifo(`${p}.fifo`);
      symlinkSync(`${p}.fifo`, p);
    },
    followed: "a FIFO",
  },
  { what: "a directory", make: (p) => mkdirSync(p), followed: "a directory" },
];
