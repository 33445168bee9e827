/** `porthole`: parses the command line, runs one command, and answers with an exit code (see exit.ts). */
import { parseArgs } from 'node:util'
import { Client } from './client.js'
import { COMMANDS, type Run } from './commands.js'
import { cliEnv, type CliEnv } from './config.js'
import { CliError, EXIT, usage, type ExitCode } from './exit.js'

const OPTIONS = {
  url: { type: 'string' }, key: { type: 'string' }, json: { type: 'boolean' }, quiet: { type: 'boolean', short: 'q' },
  timeout: { type: 'string' }, help: { type: 'boolean', short: 'h' },
  server: { type: 'string' }, state: { type: 'string' }, kind: { type: 'string' }, tenant: { type: 'string' }, limit: { type: 'string' },
  protocol: { type: 'string' }, ttl: { type: 'string' }, 'single-use': { type: 'boolean' }, open: { type: 'boolean' },
  'no-wait': { type: 'boolean' }, 'idempotency-key': { type: 'string' }, role: { type: 'string' }, name: { type: 'string' }, events: { type: 'string' }
} as const

const GLOBAL = ['url', 'key', 'json', 'quiet', 'timeout', 'help']
const DEFAULT_TIMEOUT_SECONDS = 120

export interface Io {
  stdout: (s: string) => void
  stderr: (s: string) => void
  /** Rewrites one status line in place (stderr is a terminal), or undefined. */
  ticker?: ((s: string) => void) | undefined
  env: CliEnv
}

const defaultIo = (): Io => ({
  stdout: s => process.stdout.write(s + '\n'),
  stderr: s => process.stderr.write(s + '\n'),
  ticker: process.stderr.isTTY ? s => process.stderr.write(`\r\x1b[2K${s}`) : undefined,
  env: cliEnv()
})

export function help (): string {
  const rows = Object.entries(COMMANDS).map(([name, c]) => [`porthole ${name}${c.args === '' ? '' : ' ' + c.args}`, c.summary] as const)
  const w = 34
  return [
    'porthole: Porthole from the command line',
    '',
    'usage: porthole <command> [arguments] [--url URL] [--key KEY] [--json] [--timeout SECONDS] [--quiet]',
    '',
    ...rows.map(([a, s]) => a.length > w ? `  ${a}\n  ${''.padEnd(w)}  ${s}` : `  ${a.padEnd(w)}  ${s}`),
    '',
    'options of the listing commands: --server ID, --state, --kind, --tenant ID, --limit N (as the API\'s query)',
    'console: --protocol vnc|guacamole|serial, --ttl SECONDS, --single-use, --open (runs $BROWSER or xdg-open)',
    '',
    'URL and key: --url / --key, else PORTHOLE_URL / PORTHOLE_KEY (default URL http://127.0.0.1:8080).',
    'Tables for people, --json for scripts. While a job runs its states go to stderr (--quiet: none).',
    'Exit codes: 0 ok, 1 refused by the API, 2 usage, 3 auth (401/403), 4 not found, 5 job failed,',
    '            6 timed out (the job, or --timeout, default 120 s), 7 API unreachable.'
  ].join('\n')
}

export async function main (argv: string[], io: Io = defaultIo()): Promise<ExitCode> {
  let parsed: ReturnType<typeof parseArgs<{ options: typeof OPTIONS, allowPositionals: true, strict: true }>>
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true })
  } catch (err) {
    io.stderr(`porthole: ${(err as Error).message}\n\n${help()}`)
    return EXIT.usage
  }
  const { values, positionals } = parsed
  if (positionals.length === 0 || positionals[0] === 'help' || (values.help === true)) {
    const bad = positionals.length === 0 && values.help !== true
    ;(bad ? io.stderr : io.stdout)(help())
    return bad ? EXIT.usage : EXIT.ok
  }
  const two = `${positionals[0] ?? ''} ${positionals[1] ?? ''}`
  const [name, rest] = COMMANDS[two] !== undefined ? [two, positionals.slice(2)] : [positionals[0] ?? '', positionals.slice(1)]
  const cmd = COMMANDS[name]
  const json = values.json === true
  try {
    if (cmd === undefined) throw usage(`unknown command "${positionals.join(' ')}"; porthole help lists them`)
    const allowed = new Set([...GLOBAL, ...cmd.options ?? []])
    for (const o of Object.keys(values)) if (!allowed.has(o)) throw usage(`porthole ${name} takes no --${o}`)
    const timeout = values.timeout ?? String(DEFAULT_TIMEOUT_SECONDS)
    if (!/^\d+(\.\d+)?$/.test(timeout) || Number(timeout) <= 0) throw usage(`--timeout: expected seconds, got "${timeout}"`)
    const url = checkedUrl(values.url ?? io.env.url ?? 'http://127.0.0.1:8080')
    const run: Run = {
      client: new Client(url.endsWith('/') ? url : url + '/', values.key ?? io.env.key),
      out: { json, line: io.stdout },
      note: io.stderr,
      ticker: io.ticker,
      opts: values,
      timeoutMs: Number(timeout) * 1000,
      browser: io.env.browser
    }
    return await cmd.run(run, rest) ?? EXIT.ok
  } catch (err) {
    if (!(err instanceof CliError)) {
      io.stderr(`porthole: ${(err as Error).stack ?? String(err)}`)
      return EXIT.error
    }
    if (json && err.body !== undefined && typeof err.body === 'object') io.stdout(JSON.stringify(err.body, null, 2))
    io.stderr(`porthole: ${err.message}`)
    if (err.exitCode === EXIT.usage) io.stderr(`usage: porthole ${name} ${cmd?.args ?? ''}`.trimEnd())
    return err.exitCode
  }
}

/**
 * The API's URL, or a usage error (exit 2). Credentials in it (`https://user:pass@host`) are refused: the key
 * goes in --key / PORTHOLE_KEY, and a URL with a password in it ends up in shell history and process lists.
 * The message never repeats what it refused.
 */
function checkedUrl (url: string): string {
  let u: URL | undefined
  try { u = new URL(url) } catch { /* said below */ }
  if (u !== undefined && (u.username !== '' || u.password !== '')) {
    throw usage('--url / PORTHOLE_URL: credentials in the URL (user:password@) are refused; pass the API key with --key or PORTHOLE_KEY')
  }
  if (u === undefined || !/^https?:$/.test(u.protocol)) {
    throw usage(`--url / PORTHOLE_URL: expected an http(s) URL, got ${url.includes('@') ? 'something else' : `"${url}"`}`)
  }
  return url
}
