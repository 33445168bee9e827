/**
 * A real BMC for tests: OpenIPMI's `ipmi_sim` speaking IPMI v2 on a free UDP port of 127.0.0.1, set up from
 * the verified fixture (shared/fixtures/ipmi-sim). Its chassis-control script keeps the power state in
 * `<dir>/power` (0 or 1) and writes every call it gets to `<dir>/calls.log` with a timestamp, so tests read
 * the truth from the simulator, not from the driver. The script also plays the host's OS: a soft shutdown
 * (ACPI power button) powers the chassis off after `softDelayMs`, unless `ignoreSoft` (an OS that ignores it).
 */
import { spawn, execFile } from 'node:child_process'
import { createSocket } from 'node:dgram'
import { createServer, type AddressInfo, type Socket } from 'node:net'
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { waitFor, type Scope } from './index.js'

export interface IpmiSim {
  dir: string
  host: string
  port: number
  username: string
  password: string
  /** The chassis power as the simulator holds it. */
  power: () => Promise<'on' | 'off'>
  setPower: (p: 'on' | 'off') => Promise<void>
  /** Every chassis-control call so far: `{ at (ms), call: 'set power 1' }`. */
  calls: () => Promise<Array<{ at: number, call: string }>>
}

/** A UDP port nobody listens on right now (bound and released). */
export async function freeUdpPort (): Promise<number> {
  const s = createSocket('udp4')
  await new Promise<void>((resolve, reject) => { s.once('error', reject); s.bind(0, '127.0.0.1', () => resolve()) })
  const port = s.address().port
  await new Promise<void>(resolve => s.close(() => resolve()))
  return port
}

const CMD_CONF = `mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr
mc_enable 0x20
`

function lanConf (port: number, dir: string, user: string, password: string, sol?: string): string {
  return `name "porthole-test"
set_working_mc 0x20
  startlan 1
    addr 127.0.0.1 ${port}
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control "${dir}/chassis.sh"
${sol === undefined ? '' : `  sol "${sol}" 115200\n`}  user 2 true "${user}" "${password}" admin 10 none md2 md5 straight
`
}

function chassisScript (softDelayS: number, ignoreSoft: boolean): string {
  return `#!/bin/sh
# Called by ipmi_sim as "get <param>..." (prints "param:value") or "set <param> <value>...".
d="$(dirname "$0")"
st="$d/power"
echo "$(date +%s%3N) $*" >> "$d/calls.log"
cmd=$1; shift
case "$cmd" in
  get) for p in "$@"; do case $p in power) echo "power:$(cat "$st" 2>/dev/null || echo 0)";; boot) echo "boot:none";; esac; done;;
  set) while [ $# -gt 0 ]; do
         case $1 in
           power) echo "$2" > "$st";;
           # The OS answers the ACPI power button by shutting down a moment later.
           shutdown) if [ ${ignoreSoft ? 0 : 1} = 1 ] && [ "$(cat "$st" 2>/dev/null)" = 1 ]; then (sleep ${softDelayS}; echo 0 > "$st"; echo "$(date +%s%3N) os-powered-off" >> "$d/calls.log") >/dev/null 2>&1 & fi;;
         esac; shift 2; done;;
esac
`
}

/**
 * `sol`: a Serial-over-LAN device for the simulated host's serial port, e.g. `tcp:127.0.0.1:<port>` (see
 * `startSerialDevice`); ipmi_sim connects to it when a SOL session is first activated.
 */
export async function startIpmiSim (t: Scope, o: { softDelayMs?: number, ignoreSoft?: boolean, power?: 'on' | 'off', sol?: string } = {}): Promise<IpmiSim> {
  const dir = await mkdtemp(join(tmpdir(), 'porthole-ipmi-'))
  const port = await freeUdpPort()
  const username = 'porthole'
  const password = `pw-${randomBytes(6).toString('hex')}`
  await mkdir(join(dir, 'state'))
  await writeFile(join(dir, 'lan.conf'), lanConf(port, dir, username, password, o.sol))
  await writeFile(join(dir, 'cmd.conf'), CMD_CONF)
  await writeFile(join(dir, 'chassis.sh'), chassisScript((o.softDelayMs ?? 500) / 1000, o.ignoreSoft === true))
  await chmod(join(dir, 'chassis.sh'), 0o755)
  await writeFile(join(dir, 'power'), o.power === 'on' ? '1\n' : '0\n')
  await writeFile(join(dir, 'calls.log'), '')

  const sim = spawn('ipmi_sim', ['-c', 'lan.conf', '-f', 'cmd.conf', '-s', 'state', '-n'], { cwd: dir, stdio: ['pipe', 'ignore', 'pipe'] })
  let simErr = ''
  sim.stderr.setEncoding('utf8').on('data', (d: string) => { simErr += d })
  const exited = new Promise<void>(resolve => sim.once('exit', () => resolve()))
  t.after(async () => {
    if (sim.exitCode === null && sim.signalCode === null) sim.kill('SIGTERM')
    await exited
    await rm(dir, { recursive: true, force: true })
  })

  const ask = async (): Promise<boolean> => await new Promise(resolve => {
    execFile('ipmitool', ['-I', 'lanplus', '-C', '3', '-H', '127.0.0.1', '-p', String(port), '-U', username, '-E', '-N', '1', '-R', '1', 'chassis', 'power', 'status'],
      { env: { PATH: process.env.PATH, IPMI_PASSWORD: password }, timeout: 5000 }, (err) => resolve(err === null))
  })
  await waitFor(async () => {
    if (sim.exitCode !== null) throw new Error(`ipmi_sim exited: ${simErr}`)
    return await ask()
  }, 15_000, 'ipmi_sim to answer', 100)
  await writeFile(join(dir, 'calls.log'), '')

  return {
    dir,
    host: '127.0.0.1',
    port,
    username,
    password,
    power: async () => (await readFile(join(dir, 'power'), 'utf8')).trim() === '1' ? 'on' : 'off',
    setPower: async (p) => { await writeFile(join(dir, 'power'), p === 'on' ? '1\n' : '0\n') },
    calls: async () => (await readFile(join(dir, 'calls.log'), 'utf8')).split('\n').filter(l => l !== '').map(l => {
      const i = l.indexOf(' ')
      return { at: Number(l.slice(0, i)), call: l.slice(i + 1) }
    })
  }
}

export interface SerialDevice {
  /** The device for ipmi_sim's `sol` option. */
  device: string
  banner: string
  /** Every byte the device received, in order. */
  received: () => string
}

/**
 * The simulated host's serial port: a TCP server that plays a getty. ipmi_sim connects to it at start-up,
 * when no SOL session listens (what the host says then is lost, as on a real serial port), so, like a
 * getty, it shows `banner` on Enter (a lone carriage return); everything else it echoes in upper case, so a
 * test can tell a round trip through the device from a local echo.
 */
export async function startSerialDevice (t: Scope, banner = 'porthole-test login: '): Promise<SerialDevice> {
  const sockets = new Set<Socket>()
  let received = ''
  const server = createServer((s) => {
    sockets.add(s)
    s.on('error', () => {})
    s.once('close', () => sockets.delete(s))
    s.on('data', (d: Buffer) => {
      const text = d.toString('latin1')
      received += text
      s.write(text === '\r' ? `\r\n${banner}` : text.toUpperCase())
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', () => resolve()))
  t.after(async () => {
    for (const s of sockets) s.destroy()
    await new Promise<void>(resolve => server.close(() => resolve()))
  })
  return { device: `tcp:127.0.0.1:${(server.address() as AddressInfo).port}`, banner, received: () => received }
}
