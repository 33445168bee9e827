/** Exit codes a shell script can rely on (README, "The porthole CLI"), and the error that carries one. */

export const EXIT = {
  /** It worked (and a job waited for succeeded). */
  ok: 0,
  /** The API refused the request for another reason (conflict, invalid, a limit, a server error). */
  error: 1,
  /** The command line is wrong: unknown command or option, a missing or malformed argument. */
  usage: 2,
  /** No key, an unknown key, or a key whose role may not do this (401, 403). */
  auth: 3,
  /** The server, job, session or key does not exist (or is another tenant's), or this Porthole lacks the feature. */
  notFound: 4,
  /** The job waited for ended `failed` (or `cancelled`). */
  jobFailed: 5,
  /** The job ended `timed_out`, or did not end within `--timeout`. */
  timedOut: 6,
  /** The API did not answer: connection refused, DNS, TLS, or no HTTP answer. */
  unreachable: 7
} as const

export type ExitCode = typeof EXIT[keyof typeof EXIT]

export class CliError extends Error {
  constructor (readonly exitCode: ExitCode, message: string, readonly body?: unknown) {
    super(message)
    this.name = 'CliError'
  }
}

export function usage (message: string): CliError { return new CliError(EXIT.usage, message) }

/** The exit code for an HTTP status the API answered with. */
export function exitForStatus (status: number): ExitCode {
  if (status === 401 || status === 403) return EXIT.auth
  if (status === 404) return EXIT.notFound
  if (status === 504) return EXIT.timedOut
  return EXIT.error
}
