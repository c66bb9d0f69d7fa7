/**
 * A write's layout: the parts of a write that change which launch is fastest, and the stable name
 * dispatch tables are tuned, stored and looked up by. One definition, used by dispatch, the tuner,
 * the profile schema and the commands.
 *
 *   a copy:             "1024+128/i64"                        nope bytes + rope bytes / loc dtype
 *   a quantizing write: "fp8_ds_mla.pow2<bf16:512+64/i64"     format[.scale rule]<source:elems/loc
 *   a paged one:        "fp8_ds_v4.pow2<bf16:448+64@p64/i64"  ... @p page size
 *
 * @module
 */

import { alignmentOf, type WriteGeometry } from "./eligibility.ts";
import { formatRowBytes } from "./write_format.ts";
import {
  FORMAT_SCALE_RULES,
  isPaged,
  isQuantized,
  QUANTIZED_FORMATS,
  SCALE_RULES,
  SOURCE_DTYPES,
  type QuantizedFormat,
  type ScaleRule,
  type SourceDtype,
  type WriteFormat,
} from "./vocabulary.ts";

/** The parts of a write's layout that change which configuration is fastest. */
export interface WriteLayout {
  readonly format: WriteFormat;
  /** The sources' element type, for quantizing formats; null for a copy. */
  readonly sourceDtype: SourceDtype | null;
  /** Bytes of each source row's nope part (for a copy, also the bytes it takes in the cache). */
  readonly nopeBytes: number;
  /** Bytes of each source row's rope part. */
  readonly ropeBytes: number;
  readonly locBytes: 4 | 8;
  /** Tokens a page, for the paged formats; 0 otherwise. */
  readonly pageSize: number;
  /** The scale rule in force, for the tile-scaled formats; null otherwise. */
  readonly scaleRule: ScaleRule | null;
}

/** A copy's layout. */
export function copyLayout(nopeBytes: number, ropeBytes: number, locBytes: 4 | 8): WriteLayout {
  return { format: "copy", sourceDtype: null, nopeBytes, ropeBytes, locBytes, pageSize: 0, scaleRule: null };
}

/** The name of a layout. */
export function layoutKey(layout: WriteLayout): string {
  const loc = `/i${layout.locBytes * 8}`;
  if (!isQuantized(layout.format)) return `${layout.nopeBytes}+${layout.ropeBytes}${loc}`;
  const rule = layout.scaleRule === null ? "" : `.${layout.scaleRule}`;
  const page = isPaged(layout.format) ? `@p${layout.pageSize}` : "";
  return `${layout.format}${rule}<${layout.sourceDtype}:${layout.nopeBytes / 2}+${layout.ropeBytes / 2}${page}${loc}`;
}

const alternatives = (names: readonly string[]) => names.join("|");
const COPY_KEY = /^([1-9][0-9]{0,8}|0)\+([1-9][0-9]{0,8}|0)\/i(32|64)$/;
const QUANTIZED_KEY = new RegExp(
  `^(${alternatives(QUANTIZED_FORMATS)})(?:\\.(${alternatives(SCALE_RULES)}))?<(${alternatives(SOURCE_DTYPES)}):` +
    `([0-9]{1,9})\\+([0-9]{1,9})(?:@p([1-9][0-9]{0,8}))?\\/i(32|64)$`,
);

/** The layout a key names, or null when `key` is not a well-formed layout key. */
export function parseLayoutKey(key: string): WriteLayout | null {
  const copy = COPY_KEY.exec(key);
  if (copy !== null) {
    const layout = copyLayout(Number(copy[1]), Number(copy[2]), copy[3] === "64" ? 8 : 4);
    return layout.nopeBytes + layout.ropeBytes > 0 ? layout : null;
  }
  const q = QUANTIZED_KEY.exec(key);
  if (q === null) return null;
  const format = q[1] as QuantizedFormat;
  const scaleRule = (q[2] ?? null) as ScaleRule | null;
  const rules = FORMAT_SCALE_RULES[format];
  if ((rules === undefined) !== (scaleRule === null) || (scaleRule !== null && !rules!.includes(scaleRule))) return null;
  if (isPaged(format) !== (q[6] !== undefined)) return null;
  const layout: WriteLayout = {
    format,
    sourceDtype: q[3] as SourceDtype,
    nopeBytes: 2 * Number(q[4]),
    ropeBytes: 2 * Number(q[5]),
    locBytes: q[7] === "64" ? 8 : 4,
    pageSize: q[6] === undefined ? 0 : Number(q[6]),
    scaleRule,
  };
  return layoutKey(layout) === key ? layout : null;
}

/** Bytes each cache row of the layout receives (a paged format: a token's row in its page). */
export function layoutRowBytes(layout: WriteLayout): number {
  return formatRowBytes(layout.format, layout.nopeBytes, layout.ropeBytes);
}

/**
 * The geometry of the layout's writes into contiguous, 256-byte aligned buffers (what the tuner
 * times): every address is aligned, so the alignment is that of the sizes alone.
 */
export function layoutGeometry(layout: WriteLayout): WriteGeometry {
  const rowBytes = layoutRowBytes(layout);
  const sizes = isQuantized(layout.format) ? [rowBytes] : [layout.nopeBytes, layout.ropeBytes];
  return { format: layout.format, rowBytes, alignment: alignmentOf(sizes.filter((b) => b > 0)) };
}
