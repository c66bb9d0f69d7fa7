import { describe, expect, it } from "bun:test";
import { Stream } from "../../src/stream.ts";
import { setMlaKvBuffer } from "../../src/set_mla_kv_buffer.ts";
import { allocTensor, DeviceTensor, fromHost, wrapDevicePointer } from "../../src/tensor.ts";
import { fake, fakeAddress } from "../helpers/fake_tensors.ts";
import { thrown } from "../helpers/thrown.ts";

describe("wrapDevicePointer with the foreign allocation's size", () => {
  it("refuses a shape that would reach past the allocation, naming the shape and both sizes", () => {
    const error = thrown(() => wrapDevicePointer({ ptr: 0x10000, dtype: "bf16", shape: [10, 576], bytes: 1000 }));
    expect(error.code).toBe("INVALID_ARGUMENT");
    expect(error.argument).toBe("shape");
    expect(error.message).toContain("within the 1000-byte allocation");
    expect(error.message).toContain("reaches 11520 bytes");
  });

  it("counts strided rows up to the last element they address, not rows times stride", () => {
    // 3 rows of 512 at a stride of 576: the last element is at 2 * 576 + 511.
    expect(() => wrapDevicePointer({ ptr: 0x10000, dtype: "bf16", shape: [3, 512], strides: [576, 1], bytes: (2 * 576 + 512) * 2 })).not.toThrow();
    expect(() => wrapDevicePointer({ ptr: 0x10000, dtype: "bf16", shape: [3, 512], strides: [576, 1], bytes: (2 * 576 + 512) * 2 - 1 })).toThrow(/reaches/);
  });

  it("accepts an empty tensor over any allocation, and refuses a size that is not a byte count", () => {
    expect(() => wrapDevicePointer({ ptr: 0x10000, dtype: "i64", shape: [0], bytes: 0 })).not.toThrow();
    expect(thrown(() => wrapDevicePointer({ ptr: 0x10000, dtype: "i64", shape: [4], bytes: -8 })).argument).toBe("bytes");
  });
});

describe("an object that only has DeviceTensor's prototype", () => {
  it("is refused with INVALID_ARGUMENT wherever a tensor is used, not a TypeError", () => {
    const impostor = Object.create(DeviceTensor.prototype) as DeviceTensor;
    const real = fake("bf16", [4, 576]);
    const uses: Array<() => unknown> = [
      () => impostor.disposed,
      () => impostor.ptr,
      () => impostor.narrow(0, 0, 1),
      () => impostor.free(),
      () => setMlaKvBuffer(impostor, fake("i64", [2]), fake("bf16", [2, 512]), fake("bf16", [2, 64])),
      () => setMlaKvBuffer(real, fake("i64", [2]), impostor, fake("bf16", [2, 64])),
    ];
    for (const use of uses) {
      const error = thrown(use);
      expect([error.code, error.argument]).toEqual(["INVALID_ARGUMENT", "tensor"]);
      expect(error.message).toContain("only has DeviceTensor's prototype");
    }
  });
});

describe("wrapDevicePointer", () => {
  it("describes foreign memory with contiguous strides by default and does not own it", () => {
    const t = wrapDevicePointer({ ptr: fakeAddress(1), dtype: "bf16", shape: [8, 16, 576] });
    expect(t.ptr).toBe(fakeAddress(1));
    expect(t.strides).toEqual([9216, 576, 1]);
    expect(t.owned).toBe(false);
    expect(t.device).toBe(0);
    expect(t.numel).toBe(8 * 16 * 576);
    expect(t.elementBytes).toBe(2);
    expect(t.isContiguous()).toBe(true);
  });

  it("accepts a bigint address and explicit strides and device", () => {
    const t = wrapDevicePointer({ ptr: BigInt(fakeAddress(2)), dtype: "i64", shape: [4], strides: [1], device: 3 });
    expect(t.ptr).toBe(fakeAddress(2));
    expect(t.device).toBe(3);
  });

  const cases: Array<[string, Record<string, unknown>, string, string]> = [
    ["refuses a NULL address", { ptr: 0, dtype: "bf16", shape: [4] }, "ptr", "expected a non-NULL device address"],
    ["refuses an address beyond 2^53", { ptr: 2n ** 60n, dtype: "bf16", shape: [4] }, "ptr", "expected a non-NULL device address"],
    ["refuses an unknown dtype", { ptr: 4096, dtype: "f32", shape: [4] }, "dtype", 'got "f32"'],
    ["refuses a negative dimension", { ptr: 4096, dtype: "bf16", shape: [4, -1] }, "shape", "got -1 at index 1"],
    ["refuses strides of the wrong rank", { ptr: 4096, dtype: "bf16", shape: [4, 4], strides: [4] }, "strides", "expected 2 strides"],
    ["refuses a fractional device", { ptr: 4096, dtype: "bf16", shape: [4], device: 0.5 }, "device", "expected a device index"],
    ["refuses an unknown field", { ptr: 4096, dtype: "bf16", shape: [4], stride: [1] }, "init.stride", "unknown option"],
  ];
  for (const [sentence, init, argument, fragment] of cases) {
    it(sentence, () => {
      const error = thrown(() => wrapDevicePointer(init as never));
      expect(error.code).toBe("INVALID_ARGUMENT");
      expect(error.argument).toBe(argument);
      expect(error.message).toContain(fragment);
    });
  }
});

describe("DeviceTensor views", () => {
  it("narrows a dimension by shifting the address and keeping the strides", () => {
    const kv = fake("bf16", [4, 576]);
    const rope = kv.narrow(1, 512, 64);
    expect(rope.ptr).toBe(kv.ptr + 512 * 2);
    expect(rope.shape).toEqual([4, 64]);
    expect(rope.strides).toEqual([576, 1]);
    expect(rope.isContiguous()).toBe(false);
    expect(rope.owned).toBe(false);
  });

  it("narrows along rows by whole row strides, and counts a negative dim from the end", () => {
    const kv = fake("fp8_e4m3", [10, 656]);
    expect(kv.narrow(0, 3, 2).ptr).toBe(kv.ptr + 3 * 656);
    expect(kv.narrow(-1, 512, 144).ptr).toBe(kv.ptr + 512);
  });

  it("allows an empty narrow at the end of a dimension", () => {
    const loc = fake("i64", [8]);
    expect(loc.narrow(0, 8, 0).shape).toEqual([0]);
  });

  it("refuses a narrow that runs past the end, saying how much room there is", () => {
    const error = thrown(() => fake("bf16", [4, 576]).narrow(1, 512, 128));
    expect(error.argument).toBe("length");
    expect(error.message).toContain("expected an integer in [0, 64]");
  });

  it("refuses a narrow whose address would pass 2^53, which a number cannot carry exactly", () => {
    // 2^53 - 2^20 plus 2^20 + 2 bytes of rows: one past what a number holds exactly.
    const t = wrapDevicePointer({ ptr: 2 ** 53 - 2 ** 20, dtype: "u8", shape: [2 ** 21, 1] });
    expect(t.narrow(0, 2 ** 20 - 1, 1).ptr).toBe(2 ** 53 - 1);
    const error = thrown(() => t.narrow(0, 2 ** 20 + 2, 1));
    expect([error.code, error.argument]).toEqual(["INVALID_ARGUMENT", "start"]);
    expect(error.message).toContain("past 2^53 - 1");
  });

  it("refuses a narrow of a dimension that does not exist", () => {
    expect(thrown(() => fake("bf16", [4, 576]).narrow(2, 0, 1)).argument).toBe("dim");
  });

  it("reshapes a contiguous tensor to [n, 1, d] with contiguous strides", () => {
    const v = fake("bf16", [4, 512]).view([4, 1, 512]);
    expect(v.shape).toEqual([4, 1, 512]);
    expect(v.strides).toEqual([512, 512, 1]);
  });

  it("refuses to view a tensor with a different element count", () => {
    expect(thrown(() => fake("bf16", [4, 512]).view([4, 500])).message).toContain("expected 2048 elements");
  });

  it("refuses to view a strided tensor", () => {
    const error = thrown(() => fake("bf16", [4, 576]).narrow(1, 0, 512).view([2048]));
    expect(error.message).toContain("view needs a contiguous tensor");
  });
});

describe("DeviceTensor disposal", () => {
  it("throws DISPOSED when a freed tensor's address is read", () => {
    const t = fake("bf16", [4, 576]);
    t.free();
    expect(t.disposed).toBe(true);
    const error = thrown(() => t.ptr);
    expect(error.code).toBe("DISPOSED");
    expect(() => t.narrow(0, 0, 1)).toThrow("disposed");
  });

  it("frees twice without complaint", () => {
    const t = fake("bf16", [4]);
    t.free();
    expect(() => t.free()).not.toThrow();
  });

  it("disposes through a using declaration", () => {
    let escaped;
    {
      using t = fake("i32", [4]);
      escaped = t;
    }
    expect(escaped.disposed).toBe(true);
  });

  it("keeps views of wrapped memory usable after the wrapper is freed, as the memory is not ours", () => {
    const base = fake("bf16", [4, 576]);
    const address = base.ptr;
    const view = base.narrow(1, 0, 512);
    base.free();
    expect(view.disposed).toBe(false);
    expect(view.ptr).toBe(address);
  });

  it("disposes only the view when a view is freed", () => {
    const base = fake("bf16", [4, 576]);
    const view = base.narrow(1, 0, 512);
    view.free();
    expect(view.disposed).toBe(true);
    expect(base.disposed).toBe(false);
  });
});

describe("DeviceTensor copies (argument checks, before anything reaches the GPU)", () => {
  it("refuses to upload the wrong host array type for the dtype", () => {
    const error = thrown(() => fake("bf16", [4]).upload(new Float32Array(4) as never));
    expect(error.argument).toBe("host");
    expect(error.message).toBe("host: expected a Uint16Array for dtype bf16, got a Float32Array");
  });

  it("refuses to upload a host array of the wrong length", () => {
    expect(thrown(() => fake("i64", [4]).upload(new BigInt64Array(3))).message).toBe("host: expected 4 elements for shape [4], got 3");
  });

  it("refuses to upload into a strided view", () => {
    expect(thrown(() => fake("bf16", [4, 576]).narrow(1, 0, 512).upload(new Uint16Array(2048))).message).toContain("upload needs a contiguous tensor");
  });

  it("refuses to download a strided view", () => {
    expect(thrown(() => fake("bf16", [4, 576]).narrow(1, 0, 64).download()).message).toContain("download needs a contiguous tensor");
  });

  it("refuses a stream on another device", () => {
    const error = thrown(() => fake("u8", [4]).upload(new Uint8Array(4), { stream: Stream.default(1) }));
    expect(error.argument).toBe("options.stream");
    expect(error.message).toBe("options.stream: expected a stream on device 0, got one on device 1");
  });

  it("refuses an unknown copy option", () => {
    expect(thrown(() => fake("u8", [4]).upload(new Uint8Array(4), { sync: true } as never)).argument).toBe("options.sync");
  });
});

describe("allocTensor and fromHost (argument checks)", () => {
  it("refuses a zero-sized allocation", () => {
    const error = thrown(() => allocTensor("bf16", [0, 576]));
    expect(error.argument).toBe("shape");
    expect(error.message).toContain("integers >= 1");
  });

  it("refuses an unknown dtype", () => {
    expect(thrown(() => allocTensor("float" as never, [4])).argument).toBe("dtype");
  });

  it("refuses an unknown option of fromHost", () => {
    expect(thrown(() => fromHost(new Uint8Array(4), "u8", [4], { devcie: 0 } as never)).argument).toBe("options.devcie");
  });
});
