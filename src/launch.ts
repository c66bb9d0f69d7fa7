/**
 * The one place that calls the C writes. `setMlaKvBuffer`, the tuner's measurer and the benchmark
 * all launch through {@link launchWrite}, so what is timed is exactly what a write runs: the same
 * C function, path code, flags and arguments.
 *
 * @module
 */

import { MLA_KV_FLAG_PDL, MLA_KV_FORMAT_CODES, MLA_KV_PATH_CODES, MLA_KV_SCALE_RULE_CODES, MLA_KV_SOURCE_CODES } from "../ffi/abi.ts";
import { check, native } from "../ffi/native.ts";
import type { SetMlaKvBufferPlan } from "./layout.ts";
import type { LaunchConfig } from "./vocabulary.ts";

/** The C write's arguments that a plan leaves open. */
export interface LaunchExtras {
  /** A cudaStream_t as a number; 0 for the device's legacy default stream. */
  readonly stream: number;
  /** Programmatic dependent launch (sm_90+; the library ignores it before). */
  readonly pdl: boolean;
  /** A slot never written, or -1 for none. */
  readonly reservedSlot: number;
  /** The per-tensor scale of a flat fp8 write (ignored by the other formats). */
  readonly scale: number;
}

/**
 * Enqueues one write of `plan` with `config` on `extras.stream`. The plan must come from
 * planSetMlaKvBuffer (or describe equally checked buffers): the library rechecks everything, but
 * only the plan's checks name the TypeScript argument at fault.
 *
 * @throws {MlaKvError} what the library reports (UNSUPPORTED for a path this write cannot take,
 * CUDA for a failed launch).
 */
export function launchWrite(plan: SetMlaKvBufferPlan, config: LaunchConfig, extras: LaunchExtras): void {
  const path = MLA_KV_PATH_CODES[config.path];
  const flags = extras.pdl ? MLA_KV_FLAG_PDL : 0;
  if (plan.format === "copy") {
    check(
      native().mla_kv_set_kv_buffer(
        plan.device, extras.stream,
        plan.cachePtr, plan.capacity, plan.cacheRowStrideBytes,
        plan.locPtr, plan.locBytes, plan.n,
        plan.nopePtr, plan.nopeRowStrideBytes, plan.nopeBytes,
        plan.ropePtr, plan.ropeRowStrideBytes, plan.ropeBytes,
        extras.reservedSlot, path, config.warps, config.rowsPerWarp, flags,
      ),
      "mla_kv_set_kv_buffer",
    );
    return;
  }
  check(
    native().mla_kv_set_kv_buffer_quantized(
      plan.device, extras.stream, MLA_KV_FORMAT_CODES[plan.format], plan.scaleRule === null ? 0 : MLA_KV_SCALE_RULE_CODES[plan.scaleRule],
      plan.cachePtr, plan.capacity, plan.cacheRowStrideBytes, plan.pageSize,
      plan.locPtr, plan.locBytes, plan.n,
      MLA_KV_SOURCE_CODES[plan.sourceDtype!],
      plan.nopePtr, plan.nopeRowStrideBytes, plan.nopeElems,
      plan.ropePtr, plan.ropeRowStrideBytes, plan.ropeElems,
      extras.scale, extras.reservedSlot, path, config.warps, config.rowsPerWarp, flags,
    ),
    "mla_kv_set_kv_buffer_quantized",
  );
}
