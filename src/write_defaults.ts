/**
 * Process-wide defaults of {@link setMlaKvBuffer}'s options, for settings an engine fixes once
 * (its padding slot, programmatic dependent launch) rather than passing on every call. A call's
 * own options win over these.
 *
 * @module
 */

import { describeValue, invalidArgument } from "../ffi/errors.ts";

/** The options that have a process-wide default. */
export interface WriteDefaults {
  /**
   * A cache slot no write ever fills, or null for none (the initial value). Engines keep one
   * slot (often 0) with finite contents as the target of padded rows in CUDA graphs and
   * data-parallel batches; a padded row with loc equal to it is skipped like loc < 0, so the slot
   * keeps its contents.
   */
  readonly reservedSlot: number | null;
  /** Programmatic dependent launch on sm_90+ (initially true). */
  readonly pdl: boolean;
}

let current: WriteDefaults = Object.freeze({ reservedSlot: null, pdl: true });

/** The current defaults. */
export function writeDefaults(): WriteDefaults {
  return current;
}

/**
 * Changes some defaults; returns the previous ones, so a caller can put them back.
 *
 * @example
 * ```ts
 * setWriteDefaults({ reservedSlot: 0 }); // slot 0 is the engine's padding slot
 * ```
 * @throws {MlaKvError} `INVALID_ARGUMENT` for an unknown key or a bad value; nothing changes then.
 */
export function setWriteDefaults(update: Partial<WriteDefaults>): WriteDefaults {
  if (update === null || typeof update !== "object" || Array.isArray(update)) {
    throw invalidArgument("defaults", `expected an object like { reservedSlot: 0 }, got ${describeValue(update)}`);
  }
  const next = { ...current };
  for (const key in update) {
    const value: unknown = (update as Record<string, unknown>)[key];
    if (value === undefined) continue;
    switch (key) {
      case "reservedSlot":
        next.reservedSlot = validateReservedSlot(value, "defaults.reservedSlot");
        break;
      case "pdl":
        if (typeof value !== "boolean") throw invalidArgument("defaults.pdl", `expected true or false, got ${describeValue(value)}`);
        next.pdl = value;
        break;
      default:
        throw invalidArgument(`defaults.${key}`, "unknown default; the defaults are reservedSlot and pdl");
    }
  }
  const previous = current;
  current = Object.freeze(next);
  return previous;
}

/** A reserved slot: a non-negative safe integer, or null for none. */
export function validateReservedSlot(value: unknown, argument: string): number | null {
  if (value === null) return null;
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw invalidArgument(argument, `expected a slot index (an integer >= 0) or null for none, got ${describeValue(value)}`);
  }
  return value;
}
