import { describe, expect, it } from "bun:test";
import { checkErrors } from "../../src/check_errors.ts";
import { outOfRangeMessage } from "../../src/error_slots.ts";
import { MlaKvError } from "../../ffi/errors.ts";
import { Stream } from "../../src/stream.ts";
import { thrown } from "../helpers/thrown.ts";
import { hostLibrary } from "../helpers/host_library.ts";
import { describeChild, runInChild } from "../helpers/run_in_child.ts";

describe("outOfRangeMessage", () => {
  it("says how many rows were skipped, where the first was, and that they were not written", () => {
    expect(outOfRangeMessage(3, 17)).toBe(
      "setMlaKvBuffer skipped 3 row(s) whose loc was >= the cache capacity (first at row index 17) on device 0; those rows were not written",
    );
  });

  it("names the device, and whether the rows were written on a stream of it", () => {
    expect(outOfRangeMessage(1, 0, 2)).toContain("on device 2");
    expect(outOfRangeMessage(1, 0, 2, true)).toContain("on a stream of device 2");
  });
});

describe("checkErrors", () => {
  it("refuses a device index that is not an integer before loading anything", () => {
    expect(() => checkErrors(-1)).toThrow(MlaKvError);
    expect(() => checkErrors(0.5)).toThrow("device: expected a device index");
  });

  it("refuses bad options before loading anything, naming the option", () => {
    const cases: Array<[unknown, string]> = [
      [{ device: -1 }, "options.device"],
      [{ stream: { handle: 5 } }, "options.stream"],
      [{ stream: Stream.default(1), device: 0 }, "options.stream"],
      [{ streams: Stream.default() }, "options.streams"],
      [null, "options"],
      ["0", "options"],
    ];
    for (const [options, argument] of cases) {
      const error = thrown(() => checkErrors(options as never));
      expect([error.code, error.argument]).toEqual(["INVALID_ARGUMENT", argument]);
    }
  });

  const host = hostLibrary();
  describe.skipIf(!host)(`against the host implementation of the ABI${host ? "" : " (skipped: the C fixture did not build)"}`, () => {
    it("passes when no write skipped a row", () => {
      const result = runInChild(`m.checkErrors(0); return "clean";`, { MLA_KV_LIBRARY: host! });
      expect(result.value, describeChild(result)).toBe("clean");
    });

    it("turns the library's NO_DEVICE for a missing device into an MlaKvError", () => {
      const result = runInChild(`m.checkErrors(5);`, { MLA_KV_LIBRARY: host! });
      expect(result.error?.code, describeChild(result)).toBe("NO_DEVICE");
      expect(result.error?.message).toStartWith("mla_kv_check_errors failed: host fixture: only device 0 exists");
    });
  });
});
