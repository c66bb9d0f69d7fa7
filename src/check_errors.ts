/**
 * Reports rows that earlier writes skipped because their loc was past the end of the cache.
 *
 * The kernel cannot throw, and checking on every write would force a host sync per decode step,
 * so out-of-range rows are counted on the device and reported here, at points where the caller
 * synchronises anyway (Stream.synchronize, DeviceTensor.download, or an explicit call).
 *
 * @module
 */

import { check, native } from "../ffi/native.ts";
import { MLA_KV_ERR_OUT_OF_RANGE_LOC } from "../ffi/abi.ts";
import { MlaKvError } from "../ffi/errors.ts";
import { refuseDuringCapture } from "./capture.ts";
import { validateDevice } from "./validate.ts";

/** The message for `count` skipped rows, the first of which was at row index `firstIndex`. */
export function outOfRangeMessage(count: number, firstIndex: number, device = 0): string {
  return (
    `setMlaKvBuffer skipped ${count} row(s) whose loc was >= the cache capacity ` +
    `(first at row index ${firstIndex}) on device ${device}; those rows were not written`
  );
}

/**
 * Synchronises `device`, then throws if any write since the last check skipped rows whose loc
 * was >= the cache capacity. Reading the count also clears it, so each problem is reported once.
 *
 * Not allowed while a stream of `device` is being captured (it synchronises the device).
 *
 * @throws {MlaKvError} `OUT_OF_RANGE_LOC` when rows were skipped; `NO_DEVICE`/`CUDA` from the driver.
 *
 * @example
 * ```ts
 * setMlaKvBuffer(kvBuffer, loc, kNope, kRope);
 * checkErrors(kvBuffer.device); // throws MlaKvError("OUT_OF_RANGE_LOC") if some loc >= capacity
 * ```
 */
export function checkErrors(device = 0): void {
  validateDevice(device, "device");
  refuseDuringCapture("checkErrors()", "it waits for the GPU, whose work is only being recorded");
  const count = new BigInt64Array(1);
  const firstIndex = new BigInt64Array(1);
  const status = native().mla_kv_check_errors(device, 0, count, firstIndex);
  if (status === MLA_KV_ERR_OUT_OF_RANGE_LOC) {
    throw new MlaKvError("OUT_OF_RANGE_LOC", outOfRangeMessage(Number(count[0]), Number(firstIndex[0]), device));
  }
  check(status, "mla_kv_check_errors");
}
