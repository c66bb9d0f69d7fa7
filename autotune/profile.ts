/**
 * The autotune profile: what one GPU identity measured, per row layout and batch-size bucket.
 *
 * The schema is the single source of truth: files are validated with it on read and on write, and
 * the TypeScript types are inferred from it, so the two cannot drift apart.
 */
import { createHash } from "node:crypto";
import { z } from "zod";
import { parseLayoutKey } from "../src/layout_key.ts";
import { BUCKET_COUNT, bucketN, LAST_BUCKET, PATHS, ROWS_PER_WARP, WARPS } from "../src/vocabulary.ts";

/** The profile file format this package reads and writes. */
export const SCHEMA_VERSION = 2;

const isoDate = z.iso.datetime({ offset: true });

export const LayoutKeySchema = z
  .string()
  .max(128)
  .refine((key) => parseLayoutKey(key) !== null, "layout key must look like 1024+128/i64 or fp8_ds_mla.pow2<bf16:512+64/i64");

const LAUNCH_SHAPE = {
  path: z.enum(PATHS),
  warps: z.union([z.literal(WARPS), z.literal(0)]),
  rowsPerWarp: z.literal(ROWS_PER_WARP),
};

/** One timed launch; a spread launch has warps 0 (its row sizes its block), the others 1-16. */
export const ChoiceSchema = z.strictObject({
  ...LAUNCH_SHAPE,
  /** Microseconds per call. */
  us: z.number().positive().finite(),
});

export const BucketSchema = z
  .strictObject({
    bucket: z.int().min(0).max(LAST_BUCKET),
    n: z.int().positive(),
    /** The fastest launch of each path measured, fastest first; one of them uses the vector path. */
    ranked: z.array(ChoiceSchema).min(1).max(PATHS.length),
  })
  .superRefine((b, ctx) => {
    if (b.n !== bucketN(b.bucket)) {
      ctx.addIssue({ code: "custom", path: ["n"], message: `n must be 2^bucket = ${bucketN(b.bucket)}, got ${b.n}` });
    }
    b.ranked.forEach((c, i) => {
      if (c.path === "spread" ? c.warps !== 0 : c.warps === 0) {
        ctx.addIssue({ code: "custom", path: ["ranked", i, "warps"], message: "spread launches have warps 0, the other paths 1-16" });
      }
      if (i > 0 && c.us < b.ranked[i - 1]!.us) {
        ctx.addIssue({ code: "custom", path: ["ranked", i, "us"], message: "ranked must be fastest first" });
      }
      if (b.ranked.findIndex((d) => d.path === c.path) !== i) {
        ctx.addIssue({ code: "custom", path: ["ranked", i, "path"], message: `path ${c.path} appears twice` });
      }
    });
    if (!b.ranked.some((c) => c.path === "vector")) {
      ctx.addIssue({ code: "custom", path: ["ranked"], message: "ranked must include a vector launch: every write can take it" });
    }
  });

export const LayoutProfileSchema = z.strictObject({
  tunedAt: isoDate,
  tuneMs: z.number().nonnegative().finite(),
  method: z.enum(["search", "exhaustive"]),
  /** Whether the timed launches used programmatic dependent launch, as the writes then did. */
  pdl: z.boolean(),
  buckets: z
    .array(BucketSchema)
    .min(1)
    .max(BUCKET_COUNT)
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

export type Choice = z.infer<typeof ChoiceSchema>;
export type Bucket = z.infer<typeof BucketSchema>;
export type LayoutProfile = z.infer<typeof LayoutProfileSchema>;
export type Gpu = z.infer<typeof GpuSchema>;
export type GpuIdentity = z.infer<typeof GpuIdentitySchema>;
export type Profile = z.infer<typeof ProfileSchema>;
export type ProfileHeader = z.infer<typeof ProfileHeaderSchema>;

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
