/**
 * The kvm driver, loaded only where AGENT_TYPES has kvm. It needs @unraid/libvirt, a native binding: an
 * optional dependency, which npm leaves out when it cannot build it (no libvirt-dev on the machine), and
 * whose native part loads only with the first connection. Both are checked here, at start, so that a
 * missing binding stops the agents with what to run (a configuration error, exit code 2) rather than
 * failing every kvm job; a process serving only ipmi and ovirt never loads it.
 */
import { ConfigError } from '@porthole/shared/config'
import type { KvmDriver } from './driver.js'

export const LIBVIRT_PACKAGE = '@unraid/libvirt'
const LEAVE_OUT = 'or leave kvm out of AGENT_TYPES'

export async function loadKvmDriver (): Promise<typeof KvmDriver> {
  let driver: typeof import('./driver.js') // eslint-disable-line @typescript-eslint/consistent-type-imports
  try {
    driver = await import('./driver.js')
  } catch (err) {
    if (isMissingPackage(err)) {
      throw new ConfigError('AGENT_TYPES', `the kvm agent needs ${LIBVIRT_PACKAGE}, which is not installed (npm leaves it out when its native part cannot be built): run \`sudo apt-get install libvirt-dev && npm ci\`, ${LEAVE_OUT}`)
    }
    throw err
  }
  try {
    // The package requires its native part in Hypervisor's constructor; a connection opens only later.
    const { Hypervisor } = await import('@unraid/libvirt')
    void new Hypervisor({ uri: 'test:///default' })
  } catch (err) {
    throw new ConfigError('AGENT_TYPES', `the kvm agent needs the native part of ${LIBVIRT_PACKAGE}, which does not load (${firstLine(err)}): run \`sudo apt-get install libvirt-dev && npm rebuild ${LIBVIRT_PACKAGE}\`, ${LEAVE_OUT}`)
  }
  return driver.KvmDriver
}

function isMissingPackage (err: unknown): boolean {
  const e = err as { code?: unknown, message?: unknown }
  return e?.code === 'ERR_MODULE_NOT_FOUND' && String(e.message).includes(`'${LIBVIRT_PACKAGE}'`)
}

function firstLine (err: unknown): string {
  return String((err as { message?: unknown })?.message ?? err).split('\n')[0]?.trim().slice(0, 200) ?? ''
}
