import { describe, expect, it } from "bun:test";
import { readFileSync } from "node:fs";
import { PACKAGE_ROOT } from "../../ffi/find_library.ts";
import * as abi from "../../ffi/abi.ts";
import { MLA_KV_SYMBOLS, type ArgKind, type SymbolSpec } from "../../ffi/symbols.ts";

// The table is written by hand; these tests read the header itself so that any drift (a new
// function, a reordered argument, a changed constant) fails here rather than as memory corruption.
const header = readFileSync(`${PACKAGE_ROOT}/cuda/include/mla_kv.h`, "utf8").replace(/\/\*[\s\S]*?\*\//g, "");

interface HeaderFunction {
  name: string;
  returns: string;
  params: Array<{ type: string; name: string }>;
}

function headerFunctions(): HeaderFunction[] {
  const functions: HeaderFunction[] = [];
  for (const match of header.matchAll(/MLA_KV_API\s+([\w\s*]+?)\s*(mla_kv_\w+)\s*\(([^)]*)\)\s*;/g)) {
    const [, returns, name, paramText] = match;
    const params = paramText!.trim() === "void"
      ? []
      : paramText!.split(",").map((p) => {
          const m = /^(.*?)(\w+)$/.exec(p.trim().replace(/\s+/g, " "))!;
          return { type: m[1]!.replace(/\s+/g, "").trim(), name: m[2]! };
        });
    functions.push({ name: name!, returns: returns!.replace(/\s+/g, ""), params });
  }
  return functions;
}

// Pointers the host reads or writes itself: out-params and the host side of copies.
const HOST_POINTERS: Record<string, string[]> = {
  mla_kv_memcpy_htod: ["src"],
  mla_kv_memcpy_dtoh: ["dst"],
};

function expectedKind(fn: string, param: { type: string; name: string }): ArgKind {
  switch (param.type) {
    case "int32_t": return "i32";
    case "int64_t": return "i64";
    case "uint64_t": return "u64";
    case "float": return "f32";
    case "void*":
    case "constvoid*":
      return HOST_POINTERS[fn]?.includes(param.name) ? "buffer" : "devptr";
    default:
      if (param.type.endsWith("*")) return "buffer"; // int32_t*, int64_t*, float*, char*, void**
      throw new Error(`unexpected C type ${param.type} of ${fn}(${param.name})`);
  }
}

describe("MLA_KV_SYMBOLS", () => {
  const functions = headerFunctions();

  it("finds the header's functions (the parser itself works)", () => {
    expect(functions.length).toBeGreaterThanOrEqual(25);
    expect(functions.map((f) => f.name)).toContain("mla_kv_set_kv_buffer");
  });

  it("lists exactly the functions of mla_kv.h, in the header's order", () => {
    expect(Object.keys(MLA_KV_SYMBOLS)).toEqual(functions.map((f) => f.name));
  });

  for (const fn of headerFunctions()) {
    it(`declares ${fn.name} with the header's argument kinds and return kind`, () => {
      const spec: SymbolSpec = MLA_KV_SYMBOLS[fn.name as keyof typeof MLA_KV_SYMBOLS];
      expect(spec.args).toEqual(fn.params.map((p) => expectedKind(fn.name, p)));
      expect(spec.returns).toBe(fn.returns === "constchar*" ? "cstring" : "i32");
    });
  }
});

describe("ABI constants", () => {
  it("match every enumerator of the header", () => {
    const enumerators = [...header.matchAll(/\b(MLA_KV_[A-Z0-9_]+)\s*=\s*(\d+)/g)];
    expect(enumerators.length).toBeGreaterThan(15);
    for (const [, name, value] of enumerators) {
      expect([name, (abi as Record<string, unknown>)[name!]]).toEqual([name, Number(value)]);
    }
  });

  it("expect the header's ABI version", () => {
    expect(abi.MLA_KV_ABI_VERSION).toBe(Number(/#define MLA_KV_ABI_VERSION (\d+)/.exec(header)![1]));
  });
});
