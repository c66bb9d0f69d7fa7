import { describe, expect, it } from "bun:test";
import { MlaKvError } from "../../ffi/errors.ts";
import {
  contiguousStrides,
  isContiguousLayout,
  validateDType,
  validateDevice,
  validateOptionKeys,
  validatePointer,
  validateShape,
  validateStrides,
} from "../../src/validate.ts";
import { thrown } from "../helpers/thrown.ts";

describe("validateDevice", () => {
  it("accepts 0 and larger integer indices", () => {
    expect(validateDevice(0, "device")).toBe(0);
    expect(validateDevice(7, "device")).toBe(7);
  });

  for (const bad of [-1, 1.5, Number.NaN, "0", 2 ** 31, undefined]) {
    it(`refuses ${String(bad)} as a device index, naming the argument`, () => {
      const error = thrown(() => validateDevice(bad, "options.device"));
      expect(error.code).toBe("INVALID_ARGUMENT");
      expect(error.argument).toBe("options.device");
      expect(error.message).toContain("expected a device index");
    });
  }
});

describe("validateDType", () => {
  it("accepts every known dtype", () => {
    for (const dtype of ["bf16", "fp16", "u8", "fp8_e4m3", "fp8_e5m2", "i32", "i64"]) {
      expect(validateDType(dtype, "dtype")).toBe(dtype as never);
    }
  });

  it("refuses an unknown dtype and lists the known ones", () => {
    const error = thrown(() => validateDType("float32", "dtype"));
    expect(error.message).toBe('dtype: expected one of bf16, fp16, u8, fp8_e4m3, fp8_e5m2, i32, i64, got "float32"');
  });

  it("refuses names inherited from Object.prototype", () => {
    expect(() => validateDType("toString", "dtype")).toThrow(MlaKvError);
    expect(() => validateDType("__proto__", "dtype")).toThrow(MlaKvError);
  });
});

describe("validateShape", () => {
  it("returns a frozen copy that later changes to the input cannot reach", () => {
    const input = [4, 576];
    const shape = validateShape(input, "shape", false);
    input[0] = 99;
    expect(shape).toEqual([4, 576]);
    expect(Object.isFrozen(shape)).toBe(true);
  });

  it("says that a bigint dimension is a bigint, to be passed as a number", () => {
    expect(thrown(() => validateShape([4n, 512], "shape", false)).message).toBe(
      "shape: expected a non-empty array of integers >= 1, got 4n (a bigint; pass a number) at index 0 of [4n, 512]",
    );
    expect(thrown(() => validateStrides([512n, 1], [4, 512], "strides")).message).toContain("got 512n (a bigint; pass a number) at index 0 of [512n, 1]");
    expect(thrown(() => validateDevice(0n, "device")).message).toBe("device: expected a device index (an integer >= 0), got 0n (a bigint; pass a number)");
  });

  it("refuses a zero dimension unless empty tensors are allowed", () => {
    expect(thrown(() => validateShape([0, 576], "shape", false)).message).toContain("expected a non-empty array of integers >= 1, got 0 at index 0");
    expect(validateShape([0, 576], "shape", true)).toEqual([0, 576]);
  });

  it("refuses an empty shape", () => {
    expect(thrown(() => validateShape([], "shape", true)).message).toContain("got an array of length 0");
  });

  it("refuses fractional, negative and non-number dimensions, saying where", () => {
    expect(thrown(() => validateShape([4, 2.5], "shape", false)).message).toContain("got 2.5 at index 1 of [4, 2.5]");
    expect(thrown(() => validateShape([-1], "shape", true)).message).toContain("got -1 at index 0");
    expect(thrown(() => validateShape(["4"], "shape", true)).message).toContain('got "4" at index 0');
  });

  it("refuses a shape whose element count is past 2^53", () => {
    expect(thrown(() => validateShape([2 ** 30, 2 ** 30, 2 ** 30], "shape", false)).message).toContain("expected at most 2^53 - 1 elements");
  });
});

describe("validateStrides", () => {
  it("accepts one non-negative integer per dimension", () => {
    expect(validateStrides([1152, 1], [4, 512], "strides")).toEqual([1152, 1]);
  });

  it("refuses strides whose count differs from the rank", () => {
    expect(thrown(() => validateStrides([1], [4, 512], "strides")).message).toContain("expected 2 strides (one per dimension of [4, 512])");
  });

  it("refuses a negative stride", () => {
    expect(thrown(() => validateStrides([-576, 1], [4, 576], "strides")).message).toContain("got -576 at index 0");
  });
});

describe("validatePointer", () => {
  it("accepts a number or a bigint and returns a number", () => {
    expect(validatePointer(0x7f00_0000_1000, "ptr")).toBe(0x7f00_0000_1000);
    expect(validatePointer(0x7f00_0000_1000n, "ptr")).toBe(0x7f00_0000_1000);
  });

  for (const [bad, shown] of [[0, "0"], [-16, "-16"], [1.5, "1.5"], [2n ** 60n, `${2n ** 60n}n`], [null, "null"]] as const) {
    it(`refuses ${shown} as a device address`, () => {
      const error = thrown(() => validatePointer(bad, "ptr"));
      expect(error.argument).toBe("ptr");
      expect(error.message).toBe(`ptr: expected a non-NULL device address (a positive integer below 2^53), got ${shown}`);
    });
  }
});

describe("contiguity", () => {
  it("computes row-major strides in elements", () => {
    expect(contiguousStrides([8, 16, 576])).toEqual([9216, 576, 1]);
  });

  it("treats unit dimensions as free, whatever their stride", () => {
    expect(isContiguousLayout([4, 1, 512], [512, 7, 1])).toBe(true);
  });

  it("sees a narrowed row as not contiguous", () => {
    expect(isContiguousLayout([4, 512], [576, 1])).toBe(false);
  });

  it("sees an empty tensor as contiguous", () => {
    expect(isContiguousLayout([0, 512], [576, 1])).toBe(true);
  });
});

describe("validateOptionKeys", () => {
  it("accepts undefined and known keys", () => {
    expect(validateOptionKeys(undefined, "options", ["stream"])).toBeUndefined();
    expect(validateOptionKeys({ stream: 1 }, "options", ["stream"])).toEqual({ stream: 1 });
  });

  it("refuses an unknown key, naming it and listing the known ones", () => {
    const error = thrown(() => validateOptionKeys({ straem: 1 }, "options", ["stream", "device"]));
    expect(error.argument).toBe("options.straem");
    expect(error.message).toBe("options.straem: unknown option; the options are stream, device");
  });

  it("refuses a non-object", () => {
    expect(thrown(() => validateOptionKeys(3, "options", [])).message).toBe("options: expected a plain options object ({ … }), got 3");
    expect(thrown(() => validateOptionKeys([], "options", [])).message).toContain("got an array of length 0");
  });

  it("refuses a Map or a class instance instead of reading it as no options", () => {
    const map = new Map([["device", 1]]);
    expect(thrown(() => validateOptionKeys(map, "options", ["device"])).message).toBe("options: expected a plain options object ({ … }), got a Map");
    class Options {
      device = 1;
    }
    expect(thrown(() => validateOptionKeys(new Options(), "options", ["device"])).argument).toBe("options");
    expect(validateOptionKeys(Object.assign(Object.create(null), { device: 1 }), "options", ["device"])).toEqual({ device: 1 });
  });
});
