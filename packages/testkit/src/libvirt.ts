/**
 * Tiny diskless libvirt domains for tests, driven through `virsh` so that tests ask libvirt itself (not
 * Porthole) what state a VM is in. Each has a name unique to the test run, a VNC display on loopback, and is
 * destroyed and undefined in `t.after` (a removal that does not take fails the test, naming the domain).
 * Domain type `kvm` where /dev/kvm works for qemu, `qemu` otherwise.
 *
 * Names are `porthole-test-<run>-<random>`: `<run>` is PORTHOLE_TEST_RUN, which scripts/run-tests.mjs sets for
 * each run and then checks that no domain of its run is left defined (other runs on the machine have
 * other prefixes), `x` outside it.
 */
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { statSync } from 'node:fs'
import { promisify } from 'node:util'
import type { Scope } from './index.js'

const run = promisify(execFile)
export const TEST_LIBVIRT_URI = process.env.TEST_LIBVIRT_URI ?? 'qemu:///system'

export async function virsh (...args: string[]): Promise<string> {
  const { stdout } = await run('virsh', ['-c', TEST_LIBVIRT_URI, ...args], { timeout: 30_000 })
  return stdout.trim()
}

/** The prefix of every test domain of this run (see above). */
export const TEST_DOMAIN_PREFIX = `porthole-test-${/^[a-z0-9]{1,16}$/.test(process.env.PORTHOLE_TEST_RUN ?? '') ? process.env.PORTHOLE_TEST_RUN as string : 'x'}-`

/** A fresh name for a test domain of this run. */
export function testDomainName (): string {
  return `${TEST_DOMAIN_PREFIX}${randomBytes(5).toString('hex')}`
}

/** Destroys and undefines a domain; throws, naming it, if libvirt still lists it afterwards. */
export async function removeDomain (name: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    // destroy fails when it is not running and undefine when it is gone: both are fine here, and the listing
    // below is what decides.
    await virsh('destroy', name).catch(() => {})
    await virsh('undefine', name).catch(() => {})
    const left = (await virsh('list', '--all', '--name')).split('\n').map(l => l.trim())
    if (!left.includes(name)) return
    if (attempt === 3) throw new Error(`test domain ${name} is still defined after ${attempt} attempts to remove it`)
  }
}

let domainType: 'kvm' | 'qemu' | undefined
function pickDomainType (): 'kvm' | 'qemu' {
  if (domainType !== undefined) return domainType
  // qemu runs as libvirt-qemu (group kvm), not as the test's user: the device must be open to its group.
  try { domainType = (statSync('/dev/kvm').mode & 0o060) === 0o060 ? 'kvm' : 'qemu' } catch { domainType = 'qemu' }
  return domainType
}

export interface TinyDomainOptions {
  /** Add a VNC display (default true). */
  vnc?: boolean
  /** VNC password (at most 8 characters are used). */
  vncPassword?: string
  /** Start it (default true). */
  start?: boolean
  /** listen address of the VNC display (default 127.0.0.1). */
  listen?: string
  /** Changes the domain's XML before it is defined (e.g. a boot menu, a CD drive). */
  editXml?: (xml: string) => string
}

export interface TinyDomain {
  name: string
  uri: string
  /** libvirt's own word for the state: running, shut off, paused, ... */
  state: () => Promise<string>
  /** The domain's live XML as libvirt reports it. */
  xml: () => Promise<string>
  /** The VNC port libvirt assigned, or undefined. */
  vncPort: () => Promise<number | undefined>
  /**
   * Resolves once the guest has finished booting and is quiet: for its first seconds a tiny domain keeps a
   * CPU busy (the BIOS looking for something to boot), which a benchmark must not measure as its own cost.
   */
  settled: (timeoutMs?: number) => Promise<void>
  remove: () => Promise<void>
}

/** CPU ticks (user + system, 1/100 s) the QEMU process of a running domain has used so far. */
async function qemuTicks (name: string): Promise<number | undefined> {
  const { readFile } = await import('node:fs/promises')
  try {
    const pid = (await readFile(`/run/libvirt/qemu/${name}.pid`, 'utf8')).trim()
    const f = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]?.split(' ') ?? []
    return Number(f[11]) + Number(f[12])
  } catch { return undefined }
}

async function settle (name: string, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs
  let quiet = 0
  let last = await qemuTicks(name)
  while (quiet < 2 && Date.now() < end) {
    await new Promise(resolve => setTimeout(resolve, 250))
    const now = await qemuTicks(name)
    if (now === undefined || last === undefined) return // not a local QEMU domain: nothing to wait for
    quiet = now - last <= 2 ? quiet + 1 : 0 // at most 2 ticks in 250 ms: under 8 % of a CPU
    last = now
  }
}

export function tinyDomainXml (name: string, type: 'kvm' | 'qemu', o: TinyDomainOptions): string {
  const pw = o.vncPassword === undefined ? '' : ` passwd='${o.vncPassword}'`
  const graphics = o.vnc === false ? '' : `<graphics type='vnc' autoport='yes' listen='${o.listen ?? '127.0.0.1'}'${pw}/><video><model type='vga'/></video>`
  // Diskless: the BIOS finds no disk and iPXE finds no network card, so the screen stays on a BIOS text
  // page; ACPI lets "shutdown" reach the guest (SeaBIOS does not act on it: tests see the request, not an
  // off VM, unless they wait for the agent's escalation).
  return `<domain type='${type}'><name>${name}</name><memory unit='MiB'>32</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os><features><acpi/></features>
<on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>destroy</on_crash>
<devices><input type='keyboard' bus='ps2'/>${graphics}</devices></domain>`
}

/** Defines (and by default starts) a tiny domain; removed in `t.after`. */
export async function tinyDomain (t: Scope, o: TinyDomainOptions = {}): Promise<TinyDomain> {
  const name = testDomainName()
  const { writeFile, rm, mkdtemp } = await import('node:fs/promises')
  const { tmpdir } = await import('node:os')
  const dir = await mkdtemp(`${tmpdir()}/porthole-dom-`)
  const file = `${dir}/${name}.xml`
  const xml = tinyDomainXml(name, pickDomainType(), o)
  await writeFile(file, o.editXml === undefined ? xml : o.editXml(xml))
  // The clean-up is registered before the define: a define that times out on our side may still take.
  t.after(async () => { await removeDomain(name) })
  try {
    await virsh('define', file)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
  const d: TinyDomain = {
    name,
    uri: TEST_LIBVIRT_URI,
    state: async () => await virsh('domstate', name),
    xml: async () => await virsh('dumpxml', name),
    vncPort: async () => {
      const m = /<graphics type='vnc' port='(\d+)'/.exec(await virsh('dumpxml', name))
      const p = m === null ? undefined : Number(m[1])
      return p === undefined || p < 0 ? undefined : p
    },
    settled: async (timeoutMs = 20_000) => await settle(name, timeoutMs),
    remove: async () => { await removeDomain(name) }
  }
  if (o.start !== false) await virsh('start', name)
  return d
}
