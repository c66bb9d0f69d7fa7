import { describe, expect, it } from "bun:test";
import { codeOfStatus, errorFromStatus, EXPECTED_ABI_VERSION, formatTraceArg, formatTraceLine } from "../../ffi/native.ts";
import { hostLibrary } from "../helpers/host_library.ts";
import { describeChild, runInChild } from "../helpers/run_in_child.ts";

describe("codeOfStatus", () => {
  it("maps each status of the header to its error code", () => {
    expect([1, 2, 3, 4, 5].map(codeOfStatus)).toEqual(["INVALID_ARGUMENT", "UNSUPPORTED", "NO_DEVICE", "CUDA", "OUT_OF_RANGE_LOC"]);
  });

  it("has no code for success or for statuses the ABI does not define", () => {
    expect(codeOfStatus(0)).toBeUndefined();
    expect(codeOfStatus(6)).toBeUndefined();
    expect(codeOfStatus(-1)).toBeUndefined();
  });
});

describe("errorFromStatus", () => {
  it("names the C function and carries the C message", () => {
    const error = errorFromStatus(4, "mla_kv_malloc", "cudaMalloc failed: out of memory (cudaErrorMemoryAllocation)");
    expect(error.code).toBe("CUDA");
    expect(error.message).toBe("mla_kv_malloc failed: cudaMalloc failed: out of memory (cudaErrorMemoryAllocation)");
  });

  it("puts the diagnosed cause of a NO_DEVICE first and keeps what CUDA said after it", () => {
    const error = errorFromStatus(3, "mla_kv_device_count", "cudaGetDeviceCount failed: (cudaErrorInsufficientDriver)", undefined, "no NVIDIA driver is installed");
    expect(error.code).toBe("NO_DEVICE");
    expect(error.message).toBe("mla_kv_device_count failed: no NVIDIA driver is installed (CUDA said: cudaGetDeviceCount failed: (cudaErrorInsufficientDriver))");
  });

  it("keeps the C message alone for a NO_DEVICE with nothing to add", () => {
    expect(errorFromStatus(3, "mla_kv_malloc", "device 3 does not exist (1 visible)", "device", null).message).toBe(
      "mla_kv_malloc failed: device 3 does not exist (1 visible)",
    );
  });

  it("keeps the argument to blame", () => {
    expect(errorFromStatus(1, "mla_kv_malloc", "bad", "device").argument).toBe("device");
  });

  it("still says something when the library gave no message", () => {
    expect(errorFromStatus(2, "mla_kv_set_kv_buffer", "").message).toBe("mla_kv_set_kv_buffer failed: status 2 (UNSUPPORTED) with no message");
  });

  it("calls an undefined status an ABI mismatch", () => {
    const error = errorFromStatus(42, "mla_kv_free", "");
    expect(error.code).toBe("ABI_MISMATCH");
    expect(error.message).toBe(`mla_kv_free returned status 42, which ABI version ${EXPECTED_ABI_VERSION} does not define`);
  });
});

describe("trace formatting", () => {
  it("shows device pointers in hex and NULL as NULL", () => {
    expect(formatTraceArg("devptr", 0x7f0012340000)).toBe("0x7f0012340000");
    expect(formatTraceArg("devptr", 0)).toBe("NULL");
  });

  it("shows host buffers by type and length", () => {
    expect(formatTraceArg("buffer", new BigInt64Array(1))).toBe("BigInt64Array[1]");
  });

  it("formats a call as name(args) -> result with its duration in microseconds", () => {
    expect(formatTraceLine("mla_kv_free", ["i32", "devptr"], [0, 4096], 0, 12.345)).toBe("mla_kv_free(0, 0x1000) -> 0  (12.3 µs)");
    expect(formatTraceLine("mla_kv_build_id", [], [], "abc", 1)).toBe('mla_kv_build_id() -> "abc"  (1.0 µs)');
  });
});

describe("loading the library", () => {
  it("throws LIBRARY_NOT_FOUND at the first call that needs it, and importing mod.ts still works", () => {
    const result = runInChild(`return m.deviceCount();`, { MLA_KV_LIBRARY: "/nonexistent/libmla_kv.so" });
    expect(result.exitCode, describeChild(result)).toBe(0);
    expect(result.error?.code).toBe("LIBRARY_NOT_FOUND");
    expect(result.error?.message).toContain("/nonexistent/libmla_kv.so (from MLA_KV_LIBRARY): no such file");
  });

  const host = hostLibrary();
  const abi2 = hostLibrary(EXPECTED_ABI_VERSION + 1); // a library of the next ABI version
  describe.skipIf(!host || !abi2)(`with the host implementation of the ABI${host ? "" : " (skipped: the C fixture did not build)"}`, () => {
    it("refuses a library built for another ABI version, saying how to fix it", () => {
      const result = runInChild(`return m.deviceCount();`, { MLA_KV_LIBRARY: abi2! });
      expect(result.error?.code, describeChild(result)).toBe("ABI_MISMATCH");
      expect(result.error?.message).toBe(
        `${abi2} implements ABI version ${EXPECTED_ABI_VERSION + 1}, but this mla-kv expects version ${EXPECTED_ABI_VERSION}. Rebuild the library from this package (\`bun run build\`) or point MLA_KV_LIBRARY at a matching build.`,
      );
    });

    it("reports which library is loaded", () => {
      const result = runInChild(`return m.libraryInfo();`, { MLA_KV_LIBRARY: host! });
      expect(result.value, describeChild(result)).toEqual({
        path: host,
        buildId: "host-fixture",
        abiVersion: EXPECTED_ABI_VERSION,
        reason: "MLA_KV_LIBRARY is set, so that library is the only one used, as it is (its build id is not compared with this package's sources)",
      });
    });

    it("logs every call to stderr with its arguments, result and duration when MLA_KV_TRACE=1", () => {
      const result = runInChild(`using t = m.allocTensor("u8", [16]); return t.ptr;`, { MLA_KV_LIBRARY: host!, MLA_KV_TRACE: "1" });
      expect(result.error, describeChild(result)).toBeUndefined();
      const ptr = (result.value as number).toString(16);
      expect(result.stderr).toMatch(/^mla_kv_malloc\(0, 16, BigUint64Array\[1\]\) -> 0 {2}\(\d+\.\d µs\)$/m);
      expect(result.stderr).toMatch(new RegExp(`^mla_kv_free\\(0, 0x${ptr}\\) -> 0 {2}\\(\\d+\\.\\d µs\\)$`, "m"));
    });

    it("logs nothing without MLA_KV_TRACE", () => {
      const result = runInChild(`using t = m.allocTensor("u8", [16]);`, { MLA_KV_LIBRARY: host! });
      expect(result.stderr, describeChild(result)).not.toContain("mla_kv_malloc");
    });

    it("reads MLA_KV_TRACE as every other switch: yes logs, off does not", () => {
      const on = runInChild(`using t = m.allocTensor("u8", [16]);`, { MLA_KV_LIBRARY: host!, MLA_KV_TRACE: "yes" });
      expect(on.stderr, describeChild(on)).toContain("mla_kv_malloc(0, 16");
      const off = runInChild(`using t = m.allocTensor("u8", [16]);`, { MLA_KV_LIBRARY: host!, MLA_KV_TRACE: "off" });
      expect(off.stderr, describeChild(off)).not.toContain("mla_kv_malloc");
      expect(off.stderr).not.toContain("MLA_KV_TRACE");
    });

    it("logs nothing, with one warning, for an MLA_KV_TRACE that is no switch", () => {
      const result = runInChild(`using t = m.allocTensor("u8", [16]); using u = m.allocTensor("u8", [16]);`, { MLA_KV_LIBRARY: host!, MLA_KV_TRACE: "verbose" });
      expect(result.stderr, describeChild(result)).not.toContain("mla_kv_malloc");
      expect(result.stderr.trim().split("\n")).toEqual([
        'mla-kv: MLA_KV_TRACE="verbose" is neither on (1, true, yes, on) nor off (0, false, no, off or empty); using the default, off',
      ]);
    });
  });
});
