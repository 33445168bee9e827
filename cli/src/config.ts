/** What the CLI takes from the environment: the only file of the CLI that reads `process.env`. */

export interface CliEnv {
  /** PORTHOLE_URL: the API's base URL. */
  url: string | undefined
  /** PORTHOLE_KEY: the API key sent as `Authorization: Bearer`. */
  key: string | undefined
  /** BROWSER: the command `console --open` runs with the URL (else xdg-open, open or start). */
  browser: string | undefined
}

export function cliEnv (env: NodeJS.ProcessEnv = process.env): CliEnv {
  const nonEmpty = (v: string | undefined): string | undefined => v === undefined || v === '' ? undefined : v
  return { url: nonEmpty(env.PORTHOLE_URL), key: nonEmpty(env.PORTHOLE_KEY), browser: nonEmpty(env.BROWSER) }
}
