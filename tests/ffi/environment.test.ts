import { describe, expect, it } from "bun:test";
import { envFlag, envNumber, warnOnce } from "../../ffi/environment.ts";

/** A warn function of its own for each test, and what it was given. */
function collect() {
  const lines: string[] = [];
  return { lines, warn: (line: string) => void lines.push(line) };
}

describe("envFlag", () => {
  it("reads 1, true, yes and on as on, in any case and with blank space around", () => {
    const w = collect();
    for (const v of ["1", "true", "YES", " on ", "True"]) expect(envFlag("X", false, { env: { X: v }, warn: w.warn })).toBe(true);
    expect(w.lines).toEqual([]);
  });

  it("reads 0, false, no, off and an empty value as off", () => {
    const w = collect();
    for (const v of ["0", "false", "No", " OFF ", "", "  "]) expect(envFlag("X", true, { env: { X: v }, warn: w.warn })).toBe(false);
    expect(w.lines).toEqual([]);
  });

  it("gives the default when unset, silently", () => {
    const w = collect();
    expect(envFlag("X", true, { env: {}, warn: w.warn })).toBe(true);
    expect(envFlag("X", false, { env: {}, warn: w.warn })).toBe(false);
    expect(w.lines).toEqual([]);
  });

  it("gives the default for any other word, with one warning naming the variable and the accepted words", () => {
    const w = collect();
    expect(envFlag("MLA_KV_QUIET", false, { env: { MLA_KV_QUIET: "loud" }, warn: w.warn })).toBe(false);
    expect(envFlag("MLA_KV_QUIET", false, { env: { MLA_KV_QUIET: "loud" }, warn: w.warn })).toBe(false);
    expect(w.lines).toEqual([
      'mla-kv: MLA_KV_QUIET="loud" is neither on (1, true, yes, on) nor off (0, false, no, off or empty); using the default, off',
    ]);
    expect(envFlag("MLA_KV_AUTOTUNE", true, { env: { MLA_KV_AUTOTUNE: "2" }, warn: w.warn })).toBe(true);
    expect(w.lines[1]).toStartWith('mla-kv: MLA_KV_AUTOTUNE="2" is neither on');
    expect(w.lines[1]).toEndWith("using the default, on");
  });
});

describe("envNumber", () => {
  const range = { min: 0, max: 86_400_000, default: 60_000 };

  it("reads a whole number in range, 0 included", () => {
    const w = collect();
    expect(envNumber("N", range, { env: { N: "0" }, warn: w.warn })).toBe(0);
    expect(envNumber("N", range, { env: { N: " 40 " }, warn: w.warn })).toBe(40);
    expect(envNumber("N", range, { env: { N: "86400000" }, warn: w.warn })).toBe(86_400_000);
    expect(w.lines).toEqual([]);
  });

  it("gives the default when unset or empty, silently", () => {
    const w = collect();
    expect(envNumber("N", range, { env: {}, warn: w.warn })).toBe(60_000);
    expect(envNumber("N", range, { env: { N: " " }, warn: w.warn })).toBe(60_000);
    expect(w.lines).toEqual([]);
  });

  const bad: Array<[string, string]> = [
    ["1e12", "is out of range"],
    ["-5", "is out of range"],
    ["86400001", "is out of range"],
    ["99999999999999999999", "is out of range"],
    ["1.5", "is not a whole number"],
    ["soon", "is not a whole number"],
    ["0x10", "is not a whole number"],
    ["1e400", "is not a whole number"],
  ];
  for (const [value, why] of bad) {
    it(`gives the default for ${JSON.stringify(value)}, with one warning that it ${why}`, () => {
      const w = collect();
      expect(envNumber("MLA_KV_TUNE_WAIT_MS", range, { env: { MLA_KV_TUNE_WAIT_MS: value }, warn: w.warn })).toBe(60_000);
      expect(envNumber("MLA_KV_TUNE_WAIT_MS", range, { env: { MLA_KV_TUNE_WAIT_MS: value }, warn: w.warn })).toBe(60_000);
      expect(w.lines).toEqual([
        `mla-kv: MLA_KV_TUNE_WAIT_MS=${JSON.stringify(value)} ${why}; expected a whole number from 0 to 86400000; using the default, 60000`,
      ]);
    });
  }
});

describe("warnOnce", () => {
  it("gives each warn function each line once", () => {
    const a = collect();
    const b = collect();
    for (let i = 0; i < 3; i++) {
      warnOnce("one", a.warn);
      warnOnce("two", a.warn);
      warnOnce("one", b.warn);
    }
    expect(a.lines).toEqual(["one", "two"]);
    expect(b.lines).toEqual(["one"]);
  });
});
