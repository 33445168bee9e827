/**
 * Runs one ipmitool command against a BMC (IPMI v2 `lanplus`), the way MAAS and Ironic drive BMCs.
 * The password travels only in the child's environment (`IPMI_PASSWORD` with `-E`): never in argv, where
 * every local user could read it from /proc/<pid>/cmdline, and never in a log line or an error message.
 */
import { spawn } from 'node:child_process'
import { ActionError, AuthError, ConnectionError, TimeoutError, type PortholeError } from '@porthole/contracts/errors'

export interface Bmc {
  host: string
  port: number
  username: string
  password: string
  cipherSuite: number
}

export interface RunOptions {
  /** The ipmitool binary. */
  ipmitool: string
  /** The PATH it runs with (the agents' PATH setting; default /usr/bin:/bin). */
  searchPath?: string | undefined
  signal: AbortSignal
  /** Hard limit for this one process; it is killed after that. */
  timeoutMs: number
  /** ipmitool's own per-packet timeout (-N, seconds) and retransmissions (-R). */
  packetTimeoutS: number
  retransmits: number
}

export interface RunResult { stdout: string, stderr: string }

/** The argv of an ipmitool call: never the password (ipmitool reads IPMI_PASSWORD with `-E`). */
function ipmitoolArgs (bmc: Bmc, command: readonly string[], o: Pick<RunOptions, 'packetTimeoutS' | 'retransmits'>): string[] {
  // -v makes ipmitool say *why* a session failed (e.g. "RAKP 2 HMAC is invalid"), which classifies auth errors.
  return ['-v', '-I', 'lanplus', '-C', String(bmc.cipherSuite), '-H', bmc.host, '-p', String(bmc.port), '-U', bmc.username,
    '-E', '-N', String(o.packetTimeoutS), '-R', String(o.retransmits), ...command]
}

/** Runs the command; resolves with its output or rejects with a classified PortholeError. */
export async function runIpmitool (bmc: Bmc, command: readonly string[], o: RunOptions): Promise<RunResult> {
  if (o.signal.aborted) throw deadlineError(bmc)
  return await new Promise<RunResult>((resolve, reject) => {
    const child = spawn(o.ipmitool, ipmitoolArgs(bmc, command, o), {
      // Only what ipmitool needs: not the agent's own environment (which holds PORTHOLE_SECRET_KEY).
      env: childEnv(bmc, o.searchPath),
      // stdin closed: without a password in the environment ipmitool would otherwise wait for one at a prompt.
      stdio: ['ignore', 'pipe', 'pipe']
    })
    let stdout = ''
    let stderr = ''
    let why: 'deadline' | 'timeout' | undefined
    child.stdout.setEncoding('utf8').on('data', (d: string) => { if (stdout.length < 65536) stdout += d })
    child.stderr.setEncoding('utf8').on('data', (d: string) => { if (stderr.length < 65536) stderr += d })
    const kill = (reason: 'deadline' | 'timeout'): void => {
      why ??= reason
      child.kill('SIGTERM')
      setTimeout(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') }, 1000).unref()
    }
    const onAbort = (): void => kill('deadline')
    o.signal.addEventListener('abort', onAbort, { once: true })
    const timer = setTimeout(() => kill('timeout'), o.timeoutMs)
    const done = (): void => { clearTimeout(timer); o.signal.removeEventListener('abort', onAbort) }
    child.once('error', (err: NodeJS.ErrnoException) => {
      done()
      reject(err.code === 'ENOENT'
        ? new ActionError(`ipmitool not found (${o.ipmitool})`, { retryable: false })
        : new ActionError(`ipmitool could not be started: ${err.code ?? err.message}`, { retryable: false }))
    })
    child.once('close', (code) => {
      done()
      if (why === 'deadline') { reject(deadlineError(bmc)); return }
      if (why === 'timeout') { reject(new ConnectionError(`BMC ${where(bmc)} did not answer in ${o.timeoutMs} ms`)); return }
      if (code === 0) { resolve({ stdout, stderr }); return }
      reject(classifyFailure(bmc, `${stderr}\n${stdout}`, command))
    })
  })
}

function where (bmc: Bmc): string { return `${bmc.host}:${bmc.port}` }

function deadlineError (bmc: Bmc): TimeoutError {
  return new TimeoutError(`no result from BMC ${where(bmc)} by the job's deadline`)
}

/** Marks connection errors that happened before a session existed: the command was never sent, so a retry is safe. */
export const NO_SESSION = Symbol('porthole.ipmi.noSession')

/**
 * Classes ipmitool's output. ipmitool exits 1 for everything, so the words decide:
 * - the BMC refused the user or the password (RAKP 2 HMAC invalid, unauthorized name, privilege) → auth;
 * - nothing answered, or the session could not be set up for another reason → connection (retryable);
 * - anything else (the BMC answered with an error) → action.
 */
export function classifyFailure (bmc: Bmc, output: string, command: readonly string[]): PortholeError {
  const text = output.replace(/Loading IANA PEN Registry\.\.\.\s*/g, '')
  if (/RAKP 2 HMAC is invalid|unauthorized name|invalid (user ?)?name|RAKP \d message indicates an error|insufficient privilege|password .*(incorrect|invalid)|authentication type .*not supported|unauthorized role/i.test(text)) {
    return new AuthError(`BMC ${where(bmc)} refused the credentials`)
  }
  if (/invalid authentication algorithm|invalid integrity algorithm|invalid confidentiality algorithm|no matching cipher suite/i.test(text)) {
    return new ActionError(`BMC ${where(bmc)} does not accept cipher suite ${bmc.cipherSuite}`, { retryable: false })
  }
  if (/Unable to establish|Get Auth Capabilities error|Error issuing Get Channel Authentication Capabilities|Address lookup for .* failed|Connection refused|No route to host|Network is unreachable/i.test(text)) {
    const err = new ConnectionError(`no IPMI session with BMC ${where(bmc)}`)
    Object.defineProperty(err, NO_SESSION, { value: true })
    return err
  }
  if (/timeout|timed out|no response|Unable to (send|receive)/i.test(text)) {
    return new ConnectionError(`BMC ${where(bmc)} stopped answering`)
  }
  return new ActionError(`BMC ${where(bmc)} failed "${command.join(' ')}": ${firstLine(text)}`)
}

/** The first meaningful line of ipmitool's output, shortened: it never contains the password (that is only in the environment). */
function firstLine (text: string): string {
  const line = text.split('\n').map(l => l.trim()).find(l => l !== '' && !/^(Running|Discovered|Invalid completion code received: Invalid command$)/.test(l))
  return (line ?? 'no output').slice(0, 160)
}

/** The whole environment of an ipmitool child: where to find programs, a fixed locale, and the BMC password. */
export function childEnv (bmc: Bmc, searchPath: string | undefined): NodeJS.ProcessEnv {
  return { PATH: searchPath ?? '/usr/bin:/bin', LANG: 'C', IPMI_PASSWORD: bmc.password }
}
