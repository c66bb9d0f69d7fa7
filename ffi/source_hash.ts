/**
 * The identity of the CUDA sources a library was built from: the first 12 hex digits of a SHA-256
 * over cuda/'s .cu, .cuh and .h files with their comments and blank space removed. `bun run build`
 * puts it at the front of the library's build id, and the loader compares it with the package's
 * own cuda/. A library left over from another version of the package then fails with a clear
 * error instead of misbehaving, while an edit to a comment or to the indentation, which changes
 * no machine code, keeps every built library and tuned profile valid.
 */
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

/** The hash of the CUDA sources under `cudaDir`, or null when the folder is not there. */
export function cudaSourceHash(cudaDir: string): string | null {
  if (!existsSync(cudaDir)) return null;
  const hash = createHash("sha256");
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (/\.(cu|cuh|h)$/.test(entry.name)) hash.update(`${entry.name}\0${codeOnly(readFileSync(path, "utf8"))}\0`);
    }
  };
  walk(cudaDir);
  return hash.digest("hex").slice(0, 12);
}

const isWordChar = (c: string | undefined) => c !== undefined && /[A-Za-z0-9_]/.test(c);
const isOperatorChar = (c: string | undefined) => c !== undefined && /[-+*/%&|^!=<>.:#?~]/.test(c);

// Whether dropping the blank between `before` and `after` could change the tokens (`int x`, `a - -b`).
const blankMatters = (before: string | undefined, after: string | undefined) =>
  (isWordChar(before) && isWordChar(after)) || (isOperatorChar(before) && isOperatorChar(after));

// One piece of source at a time, in the order a C preprocessor tells them apart: comments, raw
// strings (R, after an optional u8/u/U/L, starting a token), string and character literals,
// blank space, numbers (with C++14 digit separators, 1'000'000, which are not character
// literals), identifiers, and any other single character.
const PIECE = new RegExp(
  [
    String.raw`(?<comment>\/\/[^\n]*|\/\*[\s\S]*?(?:\*\/|$))`,
    String.raw`(?<![A-Za-z0-9_])(?:u8|[uUL])?R"(?<delimiter>[^()\\\s"]{0,16})\([\s\S]*?(?:\)\k<delimiter>"|$)`,
    String.raw`"(?:\\.|[^"\\\n])*"?`,
    String.raw`'(?:\\.|[^'\\\n])*'?`,
    String.raw`(?<blank>\s+)`,
    String.raw`[0-9](?:[A-Za-z0-9_.]|'(?=[A-Za-z0-9_]))*`,
    String.raw`[A-Za-z_][A-Za-z0-9_]*`,
    String.raw`[\s\S]`,
  ].join("|"),
  "gy",
);

/**
 * C/C++ source reduced to what the compiler sees: comments dropped, and blank space dropped except
 * where it separates tokens (one space between two word characters, `int x`, or two operator
 * characters, `a - -b`), inside a preprocessor directive (one space: `#define F (x)` is not
 * `#define F(x)`), and the newline before and after a directive. String and character literals,
 * raw strings included, are kept as they are, so a `//` or `/*` inside one is not a comment.
 */
export function codeOnly(source: string): string {
  // Translation phase 2 first: a backslash-newline joins lines, in comments and directives alike.
  const text = source.replace(/\\\r?\n/g, "");
  const out: string[] = [];
  let last = ""; // the last piece kept
  let blank = false; // blank space or a comment since then
  let newline = false; // ... that must stay a newline
  let lineStart = true;
  let directive = false;
  PIECE.lastIndex = 0;
  for (let match = PIECE.exec(text); match !== null; match = PIECE.exec(text)) {
    const piece = match[0];
    if (match.groups!.comment !== undefined || match.groups!.blank !== undefined) {
      blank = true;
      // A comment is one space, even across lines (a directive goes on after it); only real
      // line ends end a directive.
      if (match.groups!.blank !== undefined && piece.includes("\n")) {
        if (directive) newline = true;
        directive = false;
        lineStart = true;
      }
      continue;
    }
    if (lineStart && piece === "#") {
      directive = true;
      newline = last !== "";
    }
    if (newline) out.push("\n");
    else if (blank && last !== "" && (directive || blankMatters(last.at(-1), piece[0]))) out.push(" ");
    out.push(piece);
    last = piece;
    blank = newline = lineStart = false;
  }
  return out.join("");
}
