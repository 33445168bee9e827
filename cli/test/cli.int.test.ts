// The porthole CLI driven as a shell would drive it (a child process running its bin), against the real
// running system: API, receiver, agents and gateway, RabbitMQ, Redis and a libvirt VM. Each test checks what
// the command printed and its exit code.
import { after, test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile, chmod } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort, REPO_ROOT, startStack, tinyDomain, waitFor, type Stack } from '@porthole/testkit'

const BIN = join(REPO_ROOT, 'cli', 'bin', 'porthole.js')

interface Ran { code: number, stdout: string, stderr: string }

/** Runs `porthole …` with the stack's URL and the given key (in PORTHOLE_KEY) unless overridden. */
async function porthole (stack: Stack, args: string[], o: { key?: string | null, env?: Record<string, string> } = {}): Promise<Ran> {
  const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin', PORTHOLE_URL: stack.apiUrl, ...o.env }
  const key = o.key === undefined ? stack.adminToken : o.key
  if (key !== null) env.PORTHOLE_KEY = key
  return await new Promise(resolve => {
    execFile(process.execPath, [BIN, ...args], { env, timeout: 120_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1
      resolve({ code, stdout, stderr })
    })
  })
}

const stack = await startStack({ after: (fn) => after(fn) })
const tenant = (await stack.api('POST', '/v1/tenants', { name: 'cli-acme' })).body
const customer = (await stack.api('POST', '/v1/api-keys', { tenantId: tenant.id, role: 'customer', name: 'cli portal' })).body.key as string
const other = (await stack.api('POST', '/v1/tenants', { name: 'cli-other' })).body

async function server (domain: string, tenantId = tenant.id): Promise<string> {
  const r = await stack.api('POST', '/v1/servers', { name: domain, tenantId, agent: 'kvm', connection: { uri: 'qemu:///system', domain } })
  assert.equal(r.status, 201, JSON.stringify(r.body))
  return r.body.id
}

test('usage errors exit 2 and say what is wrong', async () => {
  const none = await porthole(stack, [])
  assert.equal(none.code, 2)
  assert.match(none.stderr, /usage: porthole <command>/)
  const unknown = await porthole(stack, ['frobnicate'])
  assert.equal(unknown.code, 2)
  assert.match(unknown.stderr, /unknown command "frobnicate"/)
  const option = await porthole(stack, ['servers', '--bogus'])
  assert.equal(option.code, 2)
  assert.match(option.stderr, /bogus/)
  const foreign = await porthole(stack, ['servers', '--protocol', 'vnc'])
  assert.equal(foreign.code, 2)
  assert.match(foreign.stderr, /porthole servers takes no --protocol/)
  const action = await porthole(stack, ['power', randomUUID(), 'explode'])
  assert.equal(action.code, 2)
  assert.match(action.stderr, /unknown power action "explode"/)
  // Credentials in the URL are refused, from the flag or the environment, and never echoed.
  for (const run of [
    await porthole(stack, ['servers', '--url', 'https://admin:s3cret-pw@api.example']),
    await porthole(stack, ['servers'], { env: { PORTHOLE_URL: `http://ops:s3cret-pw@${new URL(stack.apiUrl).host}` } }),
    await porthole(stack, ['servers'], { env: { PORTHOLE_URL: 'http://only-user@127.0.0.1:8080' } })
  ]) {
    assert.equal(run.code, 2, run.stderr)
    assert.match(run.stderr, /credentials in the URL \(user:password@\) are refused; pass the API key with --key or PORTHOLE_KEY/)
    assert.ok(!run.stderr.includes('s3cret-pw') && !run.stdout.includes('s3cret-pw'))
  }
  // As a script would see it: the exit status in $?.
  const shell = await new Promise<string>((resolve, reject) => {
    execFile('/bin/sh', ['-c', `"${process.execPath}" "${BIN}" servers --url 'https://u:s3cret-pw@h.example' 2>/dev/null; echo "status=$?"`], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } }, (err, stdout) => { if (err !== null) reject(err); else resolve(stdout) })
  })
  assert.equal(shell.trim(), 'status=2')
  const odd = await porthole(stack, ['servers', '--url', 'user:s3cret-pw@api.example'])
  assert.equal(odd.code, 2)
  assert.ok(!odd.stderr.includes('s3cret-pw'), odd.stderr)
  const missing = await porthole(stack, ['power'])
  assert.equal(missing.code, 2)
  assert.match(missing.stderr, /missing server id/)
  const help = await porthole(stack, ['help'])
  assert.equal(help.code, 0)
  assert.match(help.stdout, /Exit codes: 0 ok/)
})

test('an API that does not answer exits 7; no key or a bad key exits 3; a customer asking for keys exits 3', async () => {
  const down = await porthole(stack, ['servers', '--url', `http://127.0.0.1:${await freePort()}`])
  assert.equal(down.code, 7, down.stderr)
  assert.match(down.stderr, /cannot reach the Porthole API at http:\/\/127\.0\.0\.1:\d+\/: ECONNREFUSED/)
  const nokey = await porthole(stack, ['servers'], { key: null })
  assert.equal(nokey.code, 3)
  assert.match(nokey.stderr, /401 Unauthorized: an API key is required/)
  const bad = await porthole(stack, ['servers', '--key', 'ph_not-a-key'])
  assert.equal(bad.code, 3)
  assert.match(bad.stderr, /unknown API key/)
  const forbidden = await porthole(stack, ['keys'], { key: customer })
  assert.equal(forbidden.code, 3)
  assert.match(forbidden.stderr, /403 Forbidden/)
})

test('servers as a table and as JSON; another tenant\'s server and an unknown one exit 4', async () => {
  const id = await server(`cli-list-${randomUUID().slice(0, 8)}`)
  const foreign = await server(`cli-foreign-${randomUUID().slice(0, 8)}`, other.id)
  const table = await porthole(stack, ['servers'], { key: customer })
  assert.equal(table.code, 0, table.stderr)
  const lines = table.stdout.trimEnd().split('\n')
  assert.match(lines[0] ?? '', /^ID\s+NAME\s+AGENT\s+TENANT\s+UPDATED$/)
  assert.ok(lines.some(l => l.startsWith(id) && l.includes('kvm')), table.stdout)
  assert.ok(!table.stdout.includes(foreign), 'a customer sees only its own tenant')
  const json = await porthole(stack, ['servers', '--json'], { key: customer })
  assert.equal(json.code, 0)
  const list = JSON.parse(json.stdout) as Array<{ id: string }>
  assert.ok(list.some(s => s.id === id))
  assert.ok(!list.some(s => s.id === foreign))
  const hidden = await porthole(stack, ['servers', 'show', foreign], { key: customer })
  assert.equal(hidden.code, 4)
  assert.match(hidden.stderr, /404 Not Found/)
  const absent = await porthole(stack, ['status', randomUUID()], { key: customer })
  assert.equal(absent.code, 4)
  const shown = await porthole(stack, ['servers', 'show', id, '--json'])
  assert.equal(shown.code, 0)
  assert.equal(JSON.parse(shown.stdout).connection.domain.startsWith('cli-list-'), true)
})

test('power off waits for the job with its states on stderr, exits 0, and libvirt agrees; status then says off', async (t) => {
  const dom = await tinyDomain(t)
  const id = await server(dom.name)
  const off = await porthole(stack, ['power', id, 'off'], { key: customer })
  assert.equal(off.code, 0, off.stderr)
  assert.equal(off.stdout.trim(), 'off: power off')
  // Progress for people on stderr: each state as the job reached it, the terminal one last.
  const seen = [...off.stderr.matchAll(/: (queued|dispatched|running|succeeded) \[/g)].map(m => m[1])
  assert.equal(seen.at(-1), 'succeeded', off.stderr)
  assert.equal(await dom.state(), 'shut off')
  const status = await porthole(stack, ['status', id, '--quiet'], { key: customer })
  assert.equal(status.code, 0, status.stderr)
  assert.equal(status.stdout.trim(), 'off')
  assert.equal(status.stderr, '', '--quiet prints no progress')
  const json = await porthole(stack, ['power', id, 'on', '--json', '--quiet'], { key: customer })
  assert.equal(json.code, 0)
  const rec = JSON.parse(json.stdout)
  assert.equal(rec.state, 'succeeded')
  assert.equal(rec.result.power, 'on')
  assert.equal(await dom.state(), 'running')
})

test('a job that fails exits 5 and says why; jobs lists it by state, shows its history, and watch exits 5 too', async () => {
  const id = await server(`cli-missing-${randomUUID().slice(0, 8)}`) // no such libvirt domain
  const on = await porthole(stack, ['power', id, 'on'], { key: customer })
  assert.equal(on.code, 5, on.stderr)
  assert.match(on.stderr, /job [0-9a-f-]{36} failed: not_found: /)
  const jobs = JSON.parse((await porthole(stack, ['jobs', '--server', id, '--state', 'failed', '--json'], { key: customer })).stdout) as Array<{ id: string, state: string }>
  assert.equal(jobs.length, 1)
  const jobId = jobs[0]?.id as string
  const table = await porthole(stack, ['jobs', '--server', id], { key: customer })
  assert.match(table.stdout, new RegExp(`^${jobId}\\s+power on\\s+failed\\s+${id}`, 'm'))
  const show = await porthole(stack, ['jobs', 'show', jobId], { key: customer })
  assert.equal(show.code, 0)
  assert.match(show.stdout, /^state:\s+failed$/m)
  assert.match(show.stdout, /^error:\s+not_found: /m)
  assert.match(show.stdout, /^ {2}\S+ {2}queued$/m)
  const watch = await porthole(stack, ['jobs', 'watch', jobId, '--json'], { key: customer })
  assert.equal(watch.code, 5)
  assert.equal(JSON.parse(watch.stdout).id, jobId)
  // Retried as it is (the domain still does not exist): a new job, linked, that fails the same way.
  const retry = await porthole(stack, ['jobs', 'retry', jobId, '--json', '--quiet'], { key: customer })
  assert.equal(retry.code, 5, retry.stderr)
  const again = JSON.parse(retry.stdout)
  assert.equal(again.retryOf, jobId)
  assert.notEqual(again.id, jobId)
  assert.match((await porthole(stack, ['jobs', 'show', again.id], { key: customer })).stdout, new RegExp(`^retry of:\\s+${jobId}$`, 'm'))
  const notQueued = await porthole(stack, ['jobs', 'cancel', jobId], { key: customer })
  assert.equal(notQueued.code, 1, 'a finished job is not cancelled: the API says 409')
  assert.match(notQueued.stderr, /409 Conflict: only a queued job can be cancelled/)
})

test('console prints the URL once, --open hands the same URL to $BROWSER; sessions lists it and revoke ends it', async (t) => {
  const dom = await tinyDomain(t)
  const id = await server(dom.name)
  const dir = await mkdtemp(join(tmpdir(), 'porthole-cli-'))
  t.after(async () => await rm(dir, { recursive: true, force: true }))
  const browser = join(dir, 'browser.sh')
  const opened = join(dir, 'opened')
  await writeFile(browser, `#!/bin/sh\nprintf '%s' "$1" > '${opened}.tmp' && mv '${opened}.tmp' '${opened}'\n`)
  await chmod(browser, 0o755)
  const c = await porthole(stack, ['console', id, '--open', '--ttl', '600'], { key: customer, env: { BROWSER: browser } })
  assert.equal(c.code, 0, c.stderr)
  const url = c.stdout.trim()
  assert.match(url, new RegExp(`^${stack.gatewayUrl}/s/[^#]+#.+$`))
  assert.equal(await waitFor(async () => await readFile(opened, 'utf8').catch(() => undefined), 10_000, 'the browser script to run'), url)
  const sessions = await porthole(stack, ['sessions', '--server', id, '--json'], { key: customer })
  const list = JSON.parse(sessions.stdout) as Array<{ id: string, revokedAt?: string }>
  assert.equal(list.length, 1)
  const sid = list[0]?.id as string
  assert.ok(url.includes(sid), 'the URL names its session')
  const table = await porthole(stack, ['sessions'], { key: customer })
  assert.match(table.stdout, new RegExp(`^${sid}\\s+${id}\\s+vnc\\s+no\\s+in \\d+ min`, 'm'))
  const revoke = await porthole(stack, ['sessions', 'revoke', sid], { key: customer })
  assert.equal(revoke.code, 0, revoke.stderr)
  assert.equal(revoke.stdout.trim(), `revoked ${sid}`)
  const after = await stack.api('GET', `/v1/console-sessions/${sid}`, undefined, { key: customer })
  assert.ok(after.body.revokedAt !== undefined, JSON.stringify(after.body))
  const again = await porthole(stack, ['sessions', 'revoke', randomUUID()], { key: customer })
  assert.equal(again.code, 4)
})

test('keys and tenants for admins: a key created is listed, works, and is gone once deleted', async () => {
  const made = await porthole(stack, ['keys', 'create', '--role', 'operator', '--name', 'cli-ops', '--json'])
  assert.equal(made.code, 0, made.stderr)
  const { id, key } = JSON.parse(made.stdout) as { id: string, key: string }
  assert.match((await porthole(stack, ['keys'])).stdout, new RegExp(`^${id}\\s+cli-ops\\s+operator`, 'm'))
  const asOperator = await porthole(stack, ['servers', '--json'], { key })
  assert.equal(asOperator.code, 0)
  const plain = await porthole(stack, ['keys', 'create', '--role', 'customer', '--name', 'cli-plain', '--tenant', tenant.id])
  assert.equal(plain.code, 0)
  assert.match(plain.stdout.trim(), /^\S+$/, 'only the key on stdout, for $(…)')
  assert.match(plain.stderr, /shown only this once/)
  const noRole = await porthole(stack, ['keys', 'create', '--name', 'x'])
  assert.equal(noRole.code, 2)
  assert.equal((await porthole(stack, ['keys', 'delete', id])).code, 0)
  assert.equal((await porthole(stack, ['servers'], { key })).code, 3, 'a deleted key is refused')
  const tenants = await porthole(stack, ['tenants'])
  assert.match(tenants.stdout, new RegExp(`^${tenant.id}\\s+cli-acme`, 'm'))
  const created = await porthole(stack, ['tenants', 'create', 'cli-new'])
  assert.equal(created.code, 0)
  const tid = created.stdout.trim()
  assert.equal((await porthole(stack, ['tenants', 'suspend', tid])).stdout.trim(), `${tid} suspended`)
  assert.equal((await porthole(stack, ['tenants', 'resume', tid])).stdout.trim(), `${tid} active`)
  assert.equal((await porthole(stack, ['tenants'], { key: customer })).code, 3)
})

test('audit lists what was done, with the API\'s filters', async (t) => {
  const dom = await tinyDomain(t)
  const id = await server(dom.name)
  assert.equal((await porthole(stack, ['power', id, 'suspend', '--quiet'], { key: customer })).code, 0)
  const audit = await porthole(stack, ['audit', '--server', id])
  assert.equal(audit.code, 0)
  const lines = audit.stdout.trimEnd().split('\n')
  assert.match(lines[0] ?? '', /^AT\s+ACTOR\s+ACTION\s+RESULT\s+SERVER\s+JOB\s+IP$/)
  assert.ok(lines.some(l => l.includes('job.power.suspend') && l.includes('(customer)') && l.includes(id)), audit.stdout)
})

test('webhooks and pools: listed where the API has them, else exit 4 saying this Porthole has none', async () => {
  for (const [what, path] of [['webhooks', '/v1/webhooks'], ['pools', '/v1/pools']] as const) {
    const api = await stack.api('GET', path)
    const r = await porthole(stack, [what])
    if (api.status === 404) {
      assert.equal(r.code, 4, r.stderr)
      assert.match(r.stderr, new RegExp(`this Porthole has no ${what}`))
    } else {
      assert.equal(r.code, 0, r.stderr)
      assert.equal(api.status, 200)
    }
  }
})

test('a job that does not end within --timeout exits 6 and says how to follow it', async (t) => {
  // An API alone: nothing consumes the job, so it stays queued whatever the machine's speed.
  const lone = await startStack(t, { services: ['api'] })
  const tn = (await lone.api('POST', '/v1/tenants', { name: 'cli-lone' })).body
  const s = (await lone.api('POST', '/v1/servers', { name: 'lone', tenantId: tn.id, agent: 'kvm', connection: { uri: 'qemu:///system', domain: 'lone' } })).body
  const r = await porthole(lone, ['power', s.id, 'off', '--timeout', '2'])
  assert.equal(r.code, 6, r.stderr)
  assert.match(r.stderr, /: queued \[/)
  assert.match(r.stderr, /is still queued after 2 s \(--timeout\); it goes on: porthole jobs watch [0-9a-f-]{36}/)
  const detached = await porthole(lone, ['power', s.id, 'reset', '--no-wait'])
  assert.equal(detached.code, 0)
  const jobId = detached.stdout.trim()
  assert.match(jobId, /^[0-9a-f-]{36}$/)
  // Still queued (nothing consumes it): cancelled, and a watcher then exits 5.
  const cancel = await porthole(lone, ['jobs', 'cancel', jobId])
  assert.equal(cancel.code, 0, cancel.stderr)
  assert.equal(cancel.stdout.trim(), `${jobId} cancelled`)
  const watch = await porthole(lone, ['jobs', 'watch', jobId])
  assert.equal(watch.code, 5)
  assert.match(watch.stderr, /cancelled/)
})

test('jobs watch without a job prints each job event of the server as it comes, until interrupted (exit 0)', async (t) => {
  const dom = await tinyDomain(t)
  const id = await server(dom.name)
  const child = spawn(process.execPath, [BIN, 'jobs', 'watch', '--server', id], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', PORTHOLE_URL: stack.apiUrl, PORTHOLE_KEY: customer } })
  t.after(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  let out = ''
  child.stdout.setEncoding('utf8').on('data', (s: string) => { out += s })
  const exited = new Promise<number | null>(resolve => child.once('exit', code => resolve(code)))
  let err = ''
  child.stderr.setEncoding('utf8').on('data', (s: string) => { err += s })
  // Said once the API has subscribed the stream: a job from now on cannot be missed.
  await waitFor(() => err.includes('following job events'), 10_000, 'the stream to open')
  const job = (await stack.api('POST', `/v1/servers/${id}/power`, { action: 'suspend' }, { key: customer })).body
  await waitFor(() => out.includes(`${job.id as string}  power  succeeded  server ${id}`), 30_000, 'the succeeded event on stdout')
  const lines = out.trimEnd().split('\n').filter(l => l.includes(job.id))
  assert.deepEqual(lines.map(l => l.split(/\s+/)[3]), ['queued', 'dispatched', 'running', 'succeeded'])
  child.kill('SIGINT')
  assert.equal(await exited, 0)
})

test('on a terminal a line counts the seconds while a job waits, and is cleared when it ends', async (t) => {
  const dom = await tinyDomain(t)
  const id = await server(dom.name)
  // script(1) runs the CLI with a pseudo-terminal as its stdin, stdout and stderr, as an operator's shell does.
  const r = await new Promise<Ran>(resolve => {
    execFile('script', ['-qec', `'${process.execPath}' '${BIN}' power ${id} off`, '/dev/null'], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', PORTHOLE_URL: stack.apiUrl, PORTHOLE_KEY: customer, TERM: 'xterm' }, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : (err as { code?: number }).code ?? -1, stdout, stderr })
    })
  })
  assert.equal(r.code, 0, r.stdout + r.stderr)
  assert.match(r.stdout, new RegExp(`\r${String.fromCharCode(27)}\\[2K. job [0-9a-f]{8} (queued|dispatched|running) \\d+\\.\\d s`), 'the counter line')
  assert.match(r.stdout, /: succeeded \[/)
  assert.match(r.stdout, /off: power off/)
  assert.equal(await dom.state(), 'shut off')
})
