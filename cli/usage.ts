/**
 * What every command shares about its command line: a usage error is one sentence for the user,
 * never a stack trace.
 */

/** A bad command line; its message is one sentence for the user. */
export class UsageError extends Error {
  override name = "UsageError";
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
