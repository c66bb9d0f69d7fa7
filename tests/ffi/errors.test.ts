import { describe, expect, it } from "bun:test";
import { describeValue, invalidArgument, MlaKvError } from "../../ffi/errors.ts";

describe("MlaKvError", () => {
  it("is an Error with a stable code, a name and the argument to blame", () => {
    const error = new MlaKvError("UNSUPPORTED", "no TMA here", "options.path");
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe("MlaKvError");
    expect(error.code).toBe("UNSUPPORTED");
    expect(error.argument).toBe("options.path");
    expect(error.message).toBe("no TMA here");
  });

  it("leaves argument out entirely when none is given", () => {
    expect("argument" in new MlaKvError("CUDA", "boom")).toBe(false);
  });

  it("keeps a cause", () => {
    const cause = new Error("dlopen failed");
    expect(new MlaKvError("LIBRARY_NOT_FOUND", "x", undefined, { cause }).cause).toBe(cause);
  });
});

describe("invalidArgument", () => {
  it("prefixes the message with the argument's name", () => {
    const error = invalidArgument("kRope", "expected 64 columns, got 128");
    expect(error.code).toBe("INVALID_ARGUMENT");
    expect(error.message).toBe("kRope: expected 64 columns, got 128");
    expect(error.argument).toBe("kRope");
  });
});

describe("describeValue", () => {
  it("shows primitives as they would be written", () => {
    expect(describeValue("tma")).toBe('"tma"');
    expect(describeValue(3)).toBe("3");
    expect(describeValue(5n)).toBe("5n");
    expect(describeValue(null)).toBe("null");
    expect(describeValue(undefined)).toBe("undefined");
  });

  it("names the type of objects instead of dumping them", () => {
    expect(describeValue(new Float32Array(2))).toBe("a Float32Array");
    expect(describeValue([1, 2])).toBe("an array of length 2");
    expect(describeValue({})).toBe("an object");
    expect(describeValue(new Map())).toBe("a Map");
    expect(describeValue(() => 1)).toBe("a function");
  });
});
