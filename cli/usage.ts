/**
 * What every command shares about its command line: `--help` on stdout with status 0, a usage
 * error as one sentence on stderr with status 2 (never a stack trace), and one meaning per exit
 * status.
 */
import { parseArgs, type ParseArgsOptionsConfig } from "node:util";

/** The exit statuses of every command, as their --help says. */
export const EXIT = {
  /** Done. */
  ok: 0,
  /** Something failed: the library did not load, a tune, a save or a check failed. */
  failed: 1,
  /** A bad command line. */
  usage: 2,
  /** The library loaded, but there is no usable NVIDIA GPU here. */
  noGpu: 3,
} as const;

/** The lines of --help that say what each exit status means, with `failed` worded per command. */
export function exitStatusHelp(failed: string): string {
  return `Exit status: ${EXIT.ok} done; ${EXIT.failed} ${failed}; ${EXIT.usage} bad flags; ${EXIT.noGpu} no usable NVIDIA GPU here.`;
}

/** A bad command line; its message is one sentence for the user. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** parseArgs with strict flags and no positionals; a bad command line throws {@link UsageError}. */
export function parseFlags<T extends ParseArgsOptionsConfig>(argv: readonly string[], options: T) {
  try {
    return parseArgs({ args: [...argv], options, strict: true, allowPositionals: false }).values;
  } catch (e) {
    throw new UsageError(parseArgsSentence(e));
  }
}

/** The sentence for an error thrown by node:util's parseArgs (unknown flag, missing value, …). */
export function parseArgsSentence(e: unknown): string {
  const err = e as { code?: string; message?: string };
  const message = String(err.message ?? e);
  const flag = /'(-{1,2}[^' ]+)/.exec(message)?.[1];
  switch (err.code) {
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION":
      return `unknown flag ${flag ?? message}`;
    case "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL":
      return `unexpected argument ${/'([^']*)'/.exec(message)?.[1] ?? message} (this command takes only flags)`;
    case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE":
      if (/does not take an argument/.test(message)) return `${flag} takes no value`;
      return `${flag ?? "a flag"} needs a value`;
    default:
      return message.split("\n")[0]!;
  }
}

/** The first line of an error's message, for one-sentence reports. */
export function firstLine(e: unknown): string {
  const text = e instanceof Error ? e.message : String(e);
  return text.split("\n")[0]!.trim() || "unknown error";
}
