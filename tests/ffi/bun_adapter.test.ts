import { describe, expect, it } from "bun:test";
import { bunAdapter, bunDeclarations } from "../../ffi/bun_adapter.ts";
import { MLA_KV_SYMBOLS } from "../../ffi/symbols.ts";
import { hostLibrary } from "../helpers/host_library.ts";

describe("bunDeclarations", () => {
  const declarations = bunDeclarations();

  it("declares every symbol of the table", () => {
    expect(Object.keys(declarations)).toEqual(Object.keys(MLA_KV_SYMBOLS));
  });

  it("passes device pointers and host buffers as ptr, and keeps integer widths", () => {
    expect(declarations.mla_kv_memcpy_htod).toEqual({ args: ["i32", "ptr", "ptr", "u64", "ptr"], returns: "i32" });
    expect(declarations.mla_kv_set_kv_buffer!.args).toEqual([
      "i32", "ptr", "ptr", "i64", "i64", "ptr", "i32", "i64", "ptr", "i64", "i64", "ptr", "i64", "i64", "i64", "i32", "i32", "i32", "i32",
    ]);
    expect(declarations.mla_kv_set_kv_buffer_quantized!.args).toEqual([
      "i32", "ptr", "i32", "i32", "ptr", "i64", "i64", "i64", "ptr", "i32", "i64", "i32", "ptr", "i64", "i64", "ptr", "i64", "i64",
      "f32", "i64", "i32", "i32", "i32", "i32",
    ]);
  });

  it("reads C strings as cstring", () => {
    expect(declarations.mla_kv_last_error).toEqual({ args: [], returns: "cstring" });
  });
});

const host = hostLibrary();
describe.skipIf(!host)(`the Bun adapter on a real library${host ? "" : " (skipped: the C fixture did not build)"}`, () => {
  it("returns C strings as primitive JS strings", () => {
    const library = bunAdapter.open(host!);
    try {
      const id = library.symbols.mla_kv_build_id();
      expect(typeof id).toBe("string");
      expect(id).toBe("host-fixture");
    } finally {
      library.close();
    }
  });

  it("passes 64-bit sizes and host out-buffers through unchanged", () => {
    const library = bunAdapter.open(host!);
    try {
      const value = new BigInt64Array(1);
      expect(library.symbols.mla_kv_device_property(0, 5, value)).toBe(0);
      expect(value[0]).toBe(85899345920n);
      const out = new BigUint64Array(1);
      expect(library.symbols.mla_kv_malloc(0, 2 ** 33 / 1024, out)).toBe(0);
      const address = Number(out[0]);
      expect(address % 256).toBe(0);
      const host = new Uint8Array([1, 2, 3, 4]);
      const back = new Uint8Array(4);
      expect(library.symbols.mla_kv_memcpy_htod(0, address, host, 4, 0)).toBe(0);
      expect(library.symbols.mla_kv_memcpy_dtoh(0, back, address, 4, 0)).toBe(0);
      expect([...back]).toEqual([1, 2, 3, 4]);
      expect(library.symbols.mla_kv_free(0, address)).toBe(0);
    } finally {
      library.close();
    }
  });
});
