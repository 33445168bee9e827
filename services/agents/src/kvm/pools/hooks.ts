/**
 * Pool hooks, as xen-tools' hook directories: executables in POOL_HOOKS_DIR, named by the pool, run in turn on
 * each new clone after its overlay exists and before it boots (e.g. to write a cloud-init or sysprep seed into
 * the overlay). Each runs in a process group of its own with only the clone's facts in its environment, and is
 * killed (the whole group) at POOL_HOOK_TIMEOUT_SECONDS: a failing or hanging hook fails that clone only.
 */
import { spawn } from 'node:child_process'
import { access, constants } from 'node:fs/promises'
import { join } from 'node:path'
import { PortholeError } from '@porthole/contracts/errors'

export interface HookEnv { pool: string, clone: string, slot: number, overlay: string, macs: readonly string[], golden: string }

/** The path of a hook, or why it cannot be run (no directory, not there, not executable). */
export async function hookProblem (dir: string, name: string): Promise<string | undefined> {
  if (dir === '') return `hook ${name}: the agents have no POOL_HOOKS_DIR`
  try { await access(join(dir, name), constants.X_OK) } catch { return `hook ${name} is not an executable in POOL_HOOKS_DIR` }
  return undefined
}

/** Runs one hook; throws a PortholeError saying how it failed (its exit status, or the timeout). */
export async function runHook (dir: string, name: string, e: HookEnv, timeoutMs: number): Promise<void> {
  const env: Record<string, string> = {
    PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    PORTHOLE_POOL: e.pool,
    PORTHOLE_CLONE: e.clone,
    PORTHOLE_SLOT: String(e.slot),
    PORTHOLE_OVERLAY: e.overlay,
    PORTHOLE_GOLDEN_IMAGE: e.golden,
    PORTHOLE_MACS: e.macs.join(' ')
  }
  e.macs.forEach((m, i) => { env[`PORTHOLE_MAC_${i}`] = m })
  await new Promise<void>((resolve, reject) => {
    const p = spawn(join(dir, name), [], { env, cwd: dir, detached: true, stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    p.stderr?.setEncoding('utf8').on('data', (d: string) => { if (stderr.length < 2000) stderr += d })
    let timedOut = false
    const t = setTimeout(() => {
      timedOut = true
      try { process.kill(-(p.pid as number), 'SIGKILL') } catch { /* gone already */ }
    }, timeoutMs)
    p.once('error', (err) => { clearTimeout(t); reject(new PortholeError('action', `hook ${name} could not start: ${err.message}`, { retryable: false })) })
    p.once('close', (code, signal) => {
      clearTimeout(t)
      if (timedOut) reject(new PortholeError('timeout', `hook ${name} did not finish within ${Math.round(timeoutMs / 1000)} s and was killed`, { retryable: false }))
      else if (code === 0) resolve()
      else reject(new PortholeError('action', `hook ${name} failed (${code === null ? `signal ${String(signal)}` : `exit status ${code}`})${stderr.trim() === '' ? '' : ': ' + stderr.trim().split('\n').slice(-1)[0]?.slice(0, 300)}`, { retryable: false }))
    })
  })
}
