/**
 * The autotune profile: what one GPU identity measured, per row layout and batch-size bucket.
 *
 * The schema is the single source of truth: files are validated with it on read and on write, and
 * the TypeScript types are inferred from it, so the two cannot drift apart.
 */
import { createHash } from "node:crypto";
import { z } from "zod";

/** The profile file format this package reads and writes. */
export const SCHEMA_VERSION = 1;

/** Bucket b covers n in (2^(b-1), 2^b]; bucket 0 is n = 1. 2^31 keeps bucketOf on 32-bit maths. */
export const MAX_BUCKET = 31;

export const WARPS = [1, 2, 4, 8, 16] as const;
export const ROWS_PER_WARP = [1, 2, 4] as const;
export const PATHS = ["vector", "tma"] as const;

// What src/dispatch.ts layoutKey builds: a copy's nope bytes + rope bytes / loc dtype, e.g.
// "1024+128/i64", or a quantizing write's format<source dtype:nope elements + rope elements / loc
// dtype, e.g. "fp8_ds_mla<bf16:512+64/i64".
const LAYOUT_KEY_RE = /^(?:(fp8_e4m3|fp8_e5m2|fp8_ds_mla)<(bf16|fp16):)?([1-9][0-9]{0,8})\+([0-9]{1,9})\/([a-z][a-z0-9]{0,15})$/;

const isoDate = z.iso.datetime({ offset: true });

export const LayoutKeySchema = z.string().regex(LAYOUT_KEY_RE, "layout key must look like 1024+128/i64 or fp8_ds_mla<bf16:512+64/i64");

export const LaunchConfigSchema = z.strictObject({
  path: z.enum(PATHS),
  warps: z.literal(WARPS),
  rowsPerWarp: z.literal(ROWS_PER_WARP),
});

export const ChoiceSchema = z.strictObject({
  ...LaunchConfigSchema.shape,
  /** Microseconds per call. */
  us: z.number().positive().finite(),
});

export const BucketSchema = z
  .strictObject({
    bucket: z.int().min(0).max(MAX_BUCKET),
    n: z.int().positive(),
    best: ChoiceSchema,
    bestVector: ChoiceSchema,
    bestTma: ChoiceSchema.nullable(),
  })
  .superRefine((b, ctx) => {
    if (b.n !== 2 ** b.bucket) {
      ctx.addIssue({ code: "custom", path: ["n"], message: `n must be 2^bucket = ${2 ** b.bucket}, got ${b.n}` });
    }
    if (b.bestVector.path !== "vector") {
      ctx.addIssue({ code: "custom", path: ["bestVector", "path"], message: "bestVector must use the vector path" });
    }
    if (b.bestTma !== null && b.bestTma.path !== "tma") {
      ctx.addIssue({ code: "custom", path: ["bestTma", "path"], message: "bestTma must use the tma path" });
    }
    if (b.best.us > b.bestVector.us) {
      ctx.addIssue({ code: "custom", path: ["best", "us"], message: "best is slower than bestVector" });
    }
    if (b.bestTma !== null && b.best.us > b.bestTma.us) {
      ctx.addIssue({ code: "custom", path: ["best", "us"], message: "best is slower than bestTma" });
    }
    // best must be one of the two measured winners, not a config that was never timed.
    const candidates = b.bestTma === null ? [b.bestVector] : [b.bestVector, b.bestTma];
    if (!candidates.some((c) => sameChoice(c, b.best))) {
      ctx.addIssue({ code: "custom", path: ["best"], message: "best must equal bestVector or bestTma" });
    }
  });

export const LayoutProfileSchema = z.strictObject({
  tunedAt: isoDate,
  tuneMs: z.number().nonnegative().finite(),
  method: z.enum(["search", "exhaustive"]),
  /** Smallest n from which TMA wins and keeps winning; null if it never does. */
  crossoverN: z.int().positive().nullable(),
  buckets: z
    .array(BucketSchema)
    .min(1)
    .superRefine((buckets, ctx) => {
      buckets.forEach((b, i) => {
        if (b.bucket !== i) {
          ctx.addIssue({
            code: "custom",
            path: [i, "bucket"],
            message: `buckets must be sorted, unique and contiguous from 0: expected ${i}, got ${b.bucket}`,
          });
        }
      });
    }),
});

export const GpuSchema = z.strictObject({
  name: z.string().min(1).max(256),
  ccMajor: z.int().min(0).max(99),
  ccMinor: z.int().min(0).max(99),
  smCount: z.int().positive(),
  l2Bytes: z.int().nonnegative(),
  driverVersion: z.int().nonnegative(),
  runtimeVersion: z.int().nonnegative(),
});

export const GpuIdentitySchema = z.strictObject({
  gpu: GpuSchema,
  packageVersion: z.string().min(1).max(128),
  libraryBuildId: z.string().min(1).max(256),
});

export const ProfileSchema = z.strictObject({
  schemaVersion: z.literal(SCHEMA_VERSION),
  packageVersion: GpuIdentitySchema.shape.packageVersion,
  libraryBuildId: GpuIdentitySchema.shape.libraryBuildId,
  gpu: GpuSchema,
  createdAt: isoDate,
  layouts: z.record(LayoutKeySchema, LayoutProfileSchema),
});

/**
 * Just enough of a profile to tell whose it is. Lenient on purpose: a file from a newer schema or
 * another package version must still be attributable, so that the reason given is the real one.
 */
export const ProfileHeaderSchema = z.looseObject({
  schemaVersion: z.number(),
  packageVersion: z.string(),
  libraryBuildId: z.string(),
  gpu: z.looseObject(GpuSchema.shape),
});

export type LaunchConfig = z.infer<typeof LaunchConfigSchema>;
export type Choice = z.infer<typeof ChoiceSchema>;
export type Bucket = z.infer<typeof BucketSchema>;
export type LayoutProfile = z.infer<typeof LayoutProfileSchema>;
export type Gpu = z.infer<typeof GpuSchema>;
export type GpuIdentity = z.infer<typeof GpuIdentitySchema>;
export type Profile = z.infer<typeof ProfileSchema>;
export type ProfileHeader = z.infer<typeof ProfileHeaderSchema>;

function sameChoice(a: Choice, b: Choice): boolean {
  return a.path === b.path && a.warps === b.warps && a.rowsPerWarp === b.rowsPerWarp && a.us === b.us;
}

/** The parts of a stored layout key; null when `key` is not one. */
export function parseLayoutKey(
  key: string,
): { format: string | null; sourceDtype: string | null; nope: number; rope: number; locDtype: string } | null {
  const m = LAYOUT_KEY_RE.exec(key);
  if (!m) return null;
  return { format: m[1] ?? null, sourceDtype: m[2] ?? null, nope: Number(m[3]), rope: Number(m[4]), locDtype: m[5]! };
}

/** The bucket index that serves n rows: b such that n is in (2^(b-1), 2^b]. */
export function bucketOf(n: number): number {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`n must be a positive integer, got ${n}`);
  if (n > 2 ** MAX_BUCKET) return MAX_BUCKET;
  return n === 1 ? 0 : 32 - Math.clz32(n - 1);
}

/** The measured winner for n rows; n beyond the last tuned bucket uses the last one. */
export function choiceFor(layout: LayoutProfile, n: number): Choice {
  const b = Math.min(bucketOf(n), layout.buckets.length - 1);
  return layout.buckets[b]!.best;
}

/** Smallest bucket n from which the best path is TMA in every later bucket too; null if none. */
export function computeCrossoverN(buckets: readonly Bucket[]): number | null {
  let from: number | null = null;
  for (let i = buckets.length - 1; i >= 0; i--) {
    const b = buckets[i]!;
    if (b.best.path !== "tma") break;
    from = b.n;
  }
  return from;
}

export function identityOf(profile: Profile): GpuIdentity {
  return { gpu: profile.gpu, packageVersion: profile.packageVersion, libraryBuildId: profile.libraryBuildId };
}

/** A fresh profile for an identity; `layouts` is copied, not aliased. */
export function makeProfile(
  identity: GpuIdentity,
  layouts: Record<string, LayoutProfile>,
  createdAt: Date = new Date(),
): Profile {
  return {
    schemaVersion: SCHEMA_VERSION,
    packageVersion: identity.packageVersion,
    libraryBuildId: identity.libraryBuildId,
    gpu: { ...identity.gpu },
    createdAt: createdAt.toISOString(),
    layouts: { ...layouts },
  };
}

function slug(name: string): string {
  const s = name
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 48)
    .replace(/-+$/g, "");
  return s === "" ? "gpu" : s;
}

/**
 * A filesystem-safe file stem, e.g. `nvidia-h100-80gb-hbm3__sm90__132sm__drv13000__rt13000__1a2b3c4d5e6f`.
 * The readable part is for people listing the cache dir; the hash covers every identity field
 * verbatim, because the readable part is lossy (slugged, truncated name) and must not be what
 * keeps two different setups apart.
 */
export function identityKey(identity: GpuIdentity): string {
  const g = identity.gpu;
  const canonical = JSON.stringify([
    g.name,
    g.ccMajor,
    g.ccMinor,
    g.smCount,
    g.l2Bytes,
    g.driverVersion,
    g.runtimeVersion,
    identity.libraryBuildId,
    identity.packageVersion,
  ]);
  const hash = createHash("sha256").update(canonical).digest("hex").slice(0, 12);
  return `${slug(g.name)}__sm${g.ccMajor}${g.ccMinor}__${g.smCount}sm__drv${g.driverVersion}__rt${g.runtimeVersion}__${hash}`;
}

function short(s: string): string {
  return s.length > 24 ? `${s.slice(0, 21)}...` : s;
}

/**
 * Why a profile cannot be used for this identity, as a short phrase (file value first, ours
 * second), or null when it can. The first difference found is reported, most fundamental first.
 */
export function identityMismatch(profile: ProfileHeader, identity: GpuIdentity): string | null {
  if (profile.schemaVersion > SCHEMA_VERSION) {
    return `schema version ${profile.schemaVersion} is newer than this package understands`;
  }
  if (profile.schemaVersion !== SCHEMA_VERSION) return `schema version ${profile.schemaVersion} ≠ ${SCHEMA_VERSION}`;
  const a = profile.gpu;
  const b = identity.gpu;
  if (a.name !== b.name) return `GPU ${a.name} ≠ ${b.name}`;
  if (a.ccMajor !== b.ccMajor || a.ccMinor !== b.ccMinor) {
    return `compute capability ${a.ccMajor}.${a.ccMinor} ≠ ${b.ccMajor}.${b.ccMinor}`;
  }
  if (a.smCount !== b.smCount) return `SM count ${a.smCount} ≠ ${b.smCount}`;
  if (a.l2Bytes !== b.l2Bytes) return `L2 bytes ${a.l2Bytes} ≠ ${b.l2Bytes}`;
  if (a.driverVersion !== b.driverVersion) return `driver ${a.driverVersion} ≠ ${b.driverVersion}`;
  if (a.runtimeVersion !== b.runtimeVersion) return `runtime ${a.runtimeVersion} ≠ ${b.runtimeVersion}`;
  if (profile.libraryBuildId !== identity.libraryBuildId) {
    return `library build ${short(profile.libraryBuildId)} ≠ ${short(identity.libraryBuildId)}`;
  }
  if (profile.packageVersion !== identity.packageVersion) {
    return `package version ${short(profile.packageVersion)} ≠ ${short(identity.packageVersion)}`;
  }
  return null;
}

/** True when only the setup around the GPU differs (driver, runtime, library, package), not the GPU. */
export function sameGpuModel(a: Gpu, b: Gpu): boolean {
  return a.name === b.name && a.ccMajor === b.ccMajor && a.ccMinor === b.ccMinor && a.smCount === b.smCount;
}

/** A compact one-line summary of validation issues, for warnings. */
export function describeIssues(error: z.ZodError, max = 3): string {
  const parts = error.issues.slice(0, max).map((issue) => {
    const where = issue.path.map((p) => (typeof p === "number" ? `[${p}]` : `.${String(p)}`)).join("");
    return `${where.replace(/^\./, "") || "(root)"}: ${issue.message}`;
  });
  const more = error.issues.length > max ? ` (+${error.issues.length - max} more)` : "";
  return parts.join("; ") + more;
}
