// The single-host deployment: deploy/gen-secrets.sh writes every secret and password, private and distinct,
// and docker-compose.yml uses them with no default password anywhere, refuses to start without them, and is
// a valid Compose file. No Docker engine runs here, so the file is interpolated as Compose does (the
// specification's rules: `$$`, `${VAR}`, `${VAR:-default}`, `${VAR:?error}`, …) and validated against the
// Compose specification's JSON schema.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TestContext } from 'node:test'
import { promisify } from 'node:util'
import { Ajv } from 'ajv'
import { parse } from 'yaml'
import { REPO_ROOT, SERVICES } from '@porthole/testkit'

const run = promisify(execFile)
const COMPOSE_FILE = join(REPO_ROOT, 'docker-compose.yml')
/** What gen-secrets.sh must write, and what compose must refuse to start without. */
const KEYS = ['PORTHOLE_SECRET_KEY', 'CONSOLE_TRANSIT_KEY', 'CONSOLE_KEY', 'SOL_BRIDGE_SECRET'] as const
const PASSWORDS = ['RABBITMQ_PASSWORD', 'REDIS_PASSWORD'] as const
const REQUIRED = [...KEYS, ...PASSWORDS]
const SECRETS = [...REQUIRED, 'PORTHOLE_ADMIN_TOKEN']

async function tempDir (t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'porthole-deploy-'))
  t.after(async () => { await rm(dir, { recursive: true, force: true }) })
  return dir
}

function readEnv (text: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const line of text.split('\n')) {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line)
    if (m !== null) out[m[1] as string] = m[2] as string
  }
  return out
}

async function genSecrets (file: string): Promise<Record<string, string>> {
  await run('sh', [join(REPO_ROOT, 'deploy', 'gen-secrets.sh'), file], { cwd: REPO_ROOT })
  return readEnv(await readFile(file, 'utf8'))
}

/** Compose's interpolation of one string (compose-spec, "Interpolation"); throws as Compose does for `?`. */
function interpolate (s: string, env: Record<string, string | undefined>): string {
  return s.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (all, braced?: string, op?: string, arg?: string, bare?: string) => {
    if (all === '$$') return '$'
    const name = (braced ?? bare) as string
    const value = env[name]
    const unsetOrEmpty = value === undefined || value === ''
    const missing = op?.startsWith(':') === true ? unsetOrEmpty : value === undefined
    switch (op?.replace(':', '')) {
      case '-': return missing ? arg ?? '' : value ?? ''
      case '?': if (missing) throw new Error(`required variable ${name} is missing a value: ${arg ?? ''}`); return value ?? ''
      case '+': return missing ? '' : arg ?? ''
      default: return value ?? ''
    }
  })
}

function interpolateAll (v: unknown, env: Record<string, string | undefined>): unknown {
  if (typeof v === 'string') return interpolate(v, env)
  if (Array.isArray(v)) return v.map(x => interpolateAll(x, env))
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, interpolateAll(x, env)]))
  return v
}

interface Service { environment?: Record<string, string>, healthcheck?: { test: string[] }, command?: string[], user?: string }
interface ComposeFile { services: Record<string, Service> }

async function composeText (): Promise<string> { return await readFile(COMPOSE_FILE, 'utf8') }

/** The compose file as `docker compose --env-file <file> config` would resolve it (anchors merged). */
async function resolved (env: Record<string, string>): Promise<ComposeFile> {
  return interpolateAll(parse(await composeText(), { merge: true }), env) as ComposeFile
}

test('gen-secrets.sh writes every secret and password: present, non-empty, distinct, mode 0600, kept on a rerun', async (t) => {
  const dir = await tempDir(t)
  const file = join(dir, 'nested', 'local.env')
  const env = await genSecrets(file)
  assert.equal((await stat(file)).mode & 0o777, 0o600)
  for (const name of SECRETS) assert.ok((env[name] ?? '') !== '', `${name} is generated`)
  const values = SECRETS.map(n => env[n])
  assert.equal(new Set(values).size, values.length, 'every secret is distinct')
  for (const name of KEYS) assert.equal(Buffer.from(env[name] ?? '', 'base64').length, 32, `${name} is 32 bytes in base64`)
  // The passwords go into the services' URLs as they are: hex, and long enough.
  for (const name of PASSWORDS) assert.match(env[name] ?? '', /^[0-9a-f]{48}$/, name)

  // A rerun keeps every value; a file from an older version gets only what it lacks.
  assert.deepEqual(await genSecrets(file), env)
  const old = join(dir, 'old.env')
  await writeFile(old, `PORTHOLE_SECRET_KEY=${env.PORTHOLE_SECRET_KEY ?? ''}\n`, { mode: 0o644 })
  const upgraded = await genSecrets(old)
  assert.equal(upgraded.PORTHOLE_SECRET_KEY, env.PORTHOLE_SECRET_KEY)
  for (const name of SECRETS.filter(n => n !== 'PORTHOLE_SECRET_KEY')) assert.notEqual(upgraded[name], env[name], `${name} is generated anew`)
  assert.equal((await stat(old)).mode & 0o777, 0o600, 'an existing file is made private')
})

test('docker-compose.yml has no default password: no guest, no fallback for a password or key', async () => {
  const text = await composeText()
  assert.doesNotMatch(text, /guest/i)
  // Every reference to a password, key, secret or token: none has a non-empty default, the required ones
  // are `:?` (Compose stops with the message) wherever they appear.
  const refs = [...text.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)(:?[-?+])?([^}]*)\}/g)]
  const secretRefs = refs.filter(m => /PASSWORD|PASS|SECRET|KEY|TOKEN|AUTH/.test(m[1] as string))
  assert.ok(secretRefs.length >= REQUIRED.length)
  for (const [all, name, op, arg] of secretRefs) {
    if (op !== undefined && op.endsWith('-')) assert.equal(arg, '', `${all}: a secret must not fall back to a value`)
    if ((REQUIRED as readonly string[]).includes(name as string)) assert.equal(op, ':?', `${all}: required, so it must stop Compose when missing`)
  }
  for (const name of REQUIRED) assert.ok(secretRefs.some(m => m[1] === name), `${name} is used`)
  // Nothing in the file is a literal password: the broker's and Redis' come from the env file only.
  const doc = parse(text, { merge: true }) as ComposeFile
  assert.match(doc.services.rabbitmq?.environment?.RABBITMQ_DEFAULT_PASS ?? '', /^\$\{RABBITMQ_PASSWORD:\?/)
  assert.match(doc.services.redis?.environment?.REDIS_PASSWORD ?? '', /^\$\{REDIS_PASSWORD:\?/)
})

test('without the env file Compose refuses to start, naming each missing secret', async () => {
  const doc = parse(await composeText(), { merge: true }) as unknown
  assert.throws(() => interpolateAll(doc, {}), /required variable \w+ is missing a value: run sh deploy\/gen-secrets\.sh/)
  for (const missing of REQUIRED) {
    const env = Object.fromEntries(REQUIRED.filter(n => n !== missing).map(n => [n, 'x']))
    assert.throws(() => interpolateAll(doc, env), new RegExp(`required variable ${missing} is missing`), missing)
  }
})

test('with the generated env file docker-compose.yml is a valid Compose file whose services authenticate everywhere', async (t) => {
  const env = await genSecrets(join(await tempDir(t), 'local.env'))
  const doc = await resolved(env)
  const schema = JSON.parse(await readFile(createRequire(import.meta.url).resolve('docker-compose/schema/compose-spec.json'), 'utf8')) as Record<string, unknown>
  delete schema.$schema // draft-07, named with https://, which ajv knows as http://
  const validate = new Ajv({ strict: false, validateFormats: false, allErrors: true }).compile(schema)
  assert.ok(validate(doc), JSON.stringify(validate.errors, null, 2))

  const s = doc.services
  const rabbit = s.rabbitmq
  const redis = s.redis
  assert.ok(rabbit !== undefined && redis !== undefined)
  assert.equal(rabbit.environment?.RABBITMQ_DEFAULT_PASS, env.RABBITMQ_PASSWORD)
  // No password on a command line, not even the healthcheck's (ps on the host sees it every 10 s).
  assert.doesNotMatch(rabbit.healthcheck?.test.join(' ') ?? '', /PASS|authenticate_user/, "the broker's healthcheck names no password")
  // Redis: requirepass from its environment, on redis-server's stdin (`-`), written by the shell's builtin.
  assert.match(redis.command?.join(' ') ?? '', /printf '[^']*requirepass %s[^']*' "\$REDIS_PASSWORD" \| exec docker-entrypoint\.sh redis-server -$/)
  assert.ok(!JSON.stringify(redis.command).includes(env.REDIS_PASSWORD ?? '-'))
  assert.equal(redis.environment?.REDIS_PASSWORD, env.REDIS_PASSWORD)
  assert.equal(redis.environment?.REDISCLI_AUTH, env.REDIS_PASSWORD, 'the healthcheck\'s redis-cli authenticates')

  // Each service gets the secrets the one service list (services/services.json) gives it, as under npm start
  // and in the tests' stacks, and none of the others'. Never PORTHOLE_SECRET_KEY for the gateway: it cannot
  // open server credentials.
  assert.ok(!(SERVICES.find(x => x.name === 'console-gateway')?.secrets ?? ['PORTHOLE_SECRET_KEY']).includes('PORTHOLE_SECRET_KEY'))
  const everySecret = [...new Set(SERVICES.flatMap(x => x.secrets))]
  for (const { name, secrets } of SERVICES) {
    const e = s[name]?.environment
    assert.ok(e !== undefined, `docker-compose.yml runs ${name}`)
    assert.equal(e.RABBITMQ_URL, `amqp://porthole:${env.RABBITMQ_PASSWORD ?? ''}@rabbitmq:5672`, name)
    assert.equal(e.REDIS_URL, `redis://:${env.REDIS_PASSWORD ?? ''}@redis:6379`, name)
    for (const k of everySecret) {
      if (!secrets.includes(k)) assert.ok(e[k] === undefined || e[k] === '', `${name} does not get ${k}`)
      else if (env[k] !== undefined) assert.equal(e[k], env[k], `${name} gets ${k}`)
      else assert.ok(k in e, `${name} is passed ${k}`)
    }
  }
  // The agents' bridge listens on the compose network (the gateway reaches it as "agents"), unpublished.
  assert.equal(s.agents?.environment?.SOL_BRIDGE_HOST, '0.0.0.0')
  assert.equal(s.agents?.environment?.SOL_BRIDGE_PUBLIC_HOST, 'agents')
  assert.equal((s.agents as { ports?: unknown } | undefined)?.ports, undefined)
})

test('no runtime image ships the test kit: the build deletes it, and no runtime package depends on it', async () => {
  const dockerfile = await readFile(join(REPO_ROOT, 'Dockerfile'), 'utf8')
  // The build stage's clean-up after `npm prune --omit=dev`, which keeps every workspace's link.
  const cleanUp = /npm prune --omit=dev[^\n]*\n\s*&& rm -rf ([^\n]+)/.exec(dockerfile)
  assert.ok(cleanUp !== null, 'the build stage prunes and then removes what no image needs')
  const removed = (cleanUp[1] as string).split(/\s+/)
  for (const p of ['packages/testkit', 'node_modules/@porthole/testkit', 'bench', 'test']) assert.ok(removed.includes(p), `the image build removes ${p}`)
  // The step before the prune drops the dev-only workspaces from the manifest (so that the prune removes the
  // packages only they need): run it on a copy of the manifest.
  const drop = /&& node -e "([^"]+)" \\\n\s*&& npm prune --omit=dev/.exec(dockerfile)
  assert.ok(drop !== null, 'the build stage rewrites the workspaces before the prune')
  const dir = await mkdtemp(join(tmpdir(), 'porthole-prune-'))
  try {
    await writeFile(join(dir, 'package.json'), await readFile(join(REPO_ROOT, 'package.json')))
    await run(process.execPath, ['-e', drop[1] as string], { cwd: dir })
    const kept = (JSON.parse(await readFile(join(dir, 'package.json'), 'utf8')) as { workspaces: string[] }).workspaces
    assert.deepEqual([...kept].sort(), ['packages/contracts', 'packages/shared', ...SERVICES.map(x => x.dir)].sort())
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
  const runtime = ['packages/contracts', 'packages/shared', ...SERVICES.map(x => x.dir)]
  for (const dir of runtime) {
    const pkg = JSON.parse(await readFile(join(REPO_ROOT, dir, 'package.json'), 'utf8')) as { dependencies?: Record<string, string>, optionalDependencies?: Record<string, string> }
    assert.equal({ ...pkg.dependencies, ...pkg.optionalDependencies }['@porthole/testkit'], undefined, `${dir} depends on the test kit only as a devDependency`)
  }
})

test('the image\'s entry point runs exactly the services of services/services.json, each from its entry point', async () => {
  const sh = await readFile(join(REPO_ROOT, 'deploy', 'entrypoint.sh'), 'utf8')
  const names = /^\s+([a-z|-]+)\)\n\s+svc=\$1; shift\n\s+exec node --enable-source-maps "\/app\/services\/\$svc\/dist\/bundle\/main\.js"/m.exec(sh)
  assert.ok(names !== null, 'entrypoint.sh runs a named service from its bundle, /app/services/<name>/dist/bundle/main.js')
  assert.deepEqual((names[1] as string).split('|').sort(), SERVICES.map(x => x.name).sort())
  for (const s of SERVICES) assert.equal(`${s.dir}/${s.main}`, `services/${s.name}/dist/bundle/main.js`, `${s.name}'s entry point is where the image looks`)
})
