/**
 * Reports rows that earlier writes skipped because their loc was past the end of the cache.
 *
 * The kernel cannot throw, and checking on every write would force a host sync per decode step,
 * so out-of-range rows are counted on the device, per stream, and reported here, at points where
 * the caller synchronises anyway (Stream.synchronize, DeviceTensor.download, or an explicit call).
 *
 * @module
 */

import { describeValue, invalidArgument } from "../ffi/errors.ts";
import { refuseDuringCapture } from "./capture.ts";
import { checkStreamErrors } from "./error_slots.ts";
import { Stream, streamHandleFor } from "./stream.ts";
import { validateDevice, validateOptionKeys } from "./validate.ts";

/** Which stream {@link checkErrors} checks. */
export interface CheckErrorsOptions {
  /** The device; default: the stream's, else 0. */
  device?: number;
  /** The stream whose writes are checked; default: the device's legacy default stream. */
  stream?: Stream;
}

/**
 * Waits for one stream, then throws if any write on it since the last check skipped rows whose
 * loc was >= the cache capacity. Reading the count also clears it, so each problem is reported
 * once. Each stream counts its own writes (a graph's replay counts where it was launched):
 *
 * - `checkErrors()`: the legacy default stream of device 0 (which also waits for the other
 *   blocking streams of the device, but reports only the default stream's writes);
 * - `checkErrors(device)` or `checkErrors({ device })`: the default stream of that device;
 * - `checkErrors({ stream })`: that stream, as {@link Stream.synchronize} does.
 *
 * @throws {MlaKvError} `OUT_OF_RANGE_LOC` when rows were skipped; `CAPTURE` while a stream is
 * being captured; `INVALID_ARGUMENT` for a bad device or stream, or a stream of another device;
 * `NO_DEVICE`/`CUDA` from the driver.
 *
 * @example
 * ```ts
 * setMlaKvBuffer(kvBuffer, loc, kNope, kRope, { stream });
 * checkErrors({ stream }); // throws MlaKvError("OUT_OF_RANGE_LOC") if some loc >= capacity
 * ```
 */
export function checkErrors(target: number | CheckErrorsOptions = {}): void {
  let device: number;
  let handle = 0;
  if (typeof target === "number") {
    device = validateDevice(target, "device");
  } else {
    // Never undefined: `target` defaults to {}, and an object comes back as it went in.
    const opts = validateOptionKeys(target, "options", ["device", "stream"]);
    const stream = opts.stream as Stream | undefined;
    if (stream !== undefined && !(stream instanceof Stream)) {
      throw invalidArgument("options.stream", `expected a Stream, got ${describeValue(stream)}`);
    }
    device = opts.device === undefined ? (stream?.device ?? 0) : validateDevice(opts.device, "options.device");
    handle = streamHandleFor(stream, device, "options.stream");
  }
  refuseDuringCapture("checkErrors()", "it waits for the GPU, whose work is only being recorded");
  checkStreamErrors(device, handle);
}
