// deploy/kubernetes: every object is validated against the Kubernetes API's own OpenAPI schemas (as shipped
// in the kubernetes-models package: types, required fields, enums, formats), the RabbitmqCluster against the
// part of the RabbitMQ cluster operator's CRD schema it uses, and the whole against what Porthole needs: each
// service a Deployment with readiness on /readyz and liveness on /healthz on a port it serves, only settings
// the services know, each service's secrets and no other's, every ConfigMap and Secret it names provided.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Ajv } from 'ajv'
import { parseAllDocuments } from 'yaml'
import { ConfigMap, Service } from 'kubernetes-models/v1'
import { Deployment, StatefulSet } from 'kubernetes-models/apps/v1'
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1'
import { REPO_ROOT, SERVICES } from '@porthole/testkit'

const DIR = join(REPO_ROOT, 'deploy', 'kubernetes')
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- manifests of every shape
type Obj = any

const docs: Array<{ file: string, obj: Obj }> = readdirSync(DIR).filter(f => f.endsWith('.yaml')).sort().flatMap(file =>
  parseAllDocuments(readFileSync(join(DIR, file), 'utf8')).map(d => {
    assert.deepEqual(d.errors, [], `${file}: YAML errors`)
    return { file, obj: d.toJS() as Obj }
  }))

/** The models whose validate() checks an object against the Kubernetes OpenAPI schema of its kind. */
const MODELS: Record<string, new (o: Obj) => { validate: () => void }> = {
  'v1/ConfigMap': ConfigMap, 'v1/Service': Service, 'apps/v1/Deployment': Deployment, 'apps/v1/StatefulSet': StatefulSet, 'policy/v1/PodDisruptionBudget': PodDisruptionBudget
}

/** The fields of the operator's RabbitmqCluster CRD (rabbitmq.com/v1beta1) the manifest uses, with their types. */
const RABBITMQ_CLUSTER = {
  type: 'object',
  required: ['apiVersion', 'kind', 'metadata', 'spec'],
  properties: {
    apiVersion: { const: 'rabbitmq.com/v1beta1' },
    kind: { const: 'RabbitmqCluster' },
    metadata: { type: 'object', required: ['name'], properties: { name: { type: 'string', pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$' } } },
    spec: {
      type: 'object',
      additionalProperties: false,
      properties: {
        replicas: { type: 'integer', minimum: 0 },
        image: { type: 'string' },
        resources: { type: 'object', additionalProperties: false, properties: { requests: { type: 'object' }, limits: { type: 'object' } } },
        persistence: { type: 'object', additionalProperties: false, properties: { storage: { type: ['string', 'integer'] }, storageClassName: { type: 'string' } } },
        rabbitmq: { type: 'object', additionalProperties: false, properties: { additionalConfig: { type: 'string', maxLength: 100000 }, additionalPlugins: { type: 'array', items: { type: 'string' } } } },
        override: { type: 'object', additionalProperties: false, properties: { statefulSet: { type: 'object' }, service: { type: 'object' } } }
      }
    }
  }
}

test('every object is valid against its kind\'s schema, and no kind goes unchecked', () => {
  const ajv = new Ajv({ allErrors: true, strict: false })
  const rabbit = ajv.compile(RABBITMQ_CLUSTER)
  assert.ok(docs.length >= 10)
  for (const { file, obj } of docs) {
    const kind = `${String(obj.apiVersion)}/${String(obj.kind)}`
    if (kind === 'rabbitmq.com/v1beta1/RabbitmqCluster') {
      assert.ok(rabbit(obj), `${file}: ${ajv.errorsText(rabbit.errors)}`)
      continue
    }
    const Model = MODELS[kind]
    assert.ok(Model !== undefined, `${file}: ${kind} has no schema here: add its model`)
    assert.doesNotThrow(() => { new Model(obj).validate() }, `${file}: ${String(obj.metadata?.name)}`)
  }
})

test('each service is a Deployment with /readyz and /healthz probes, its own secrets only and settings it knows', () => {
  // Every setting of every service: the README's table, generated from their config.ts and checked against
  // them in CI (scripts/settings-table.mjs --check).
  const known = new Set([...readFileSync(join(REPO_ROOT, 'README.md'), 'utf8').matchAll(/^\| `([A-Z][A-Z0-9_]+)` \|/gm)].map(m => m[1] as string))
  assert.ok(known.has('RABBITMQ_URL') && known.has('REDIS_SENTINELS'))
  // Helpers the manifests compose settings from ($(VAR) in RABBITMQ_URL and REDIS_URL).
  const helpers = new Set(['RABBITMQ_NODES', 'RABBITMQ_USERNAME', 'RABBITMQ_PASSWORD', 'REDIS_PASSWORD'])
  const config = docs.find(d => d.obj.kind === 'ConfigMap' && d.obj.metadata.name === 'porthole-config')?.obj
  assert.ok(config !== undefined)
  for (const k of Object.keys(config.data)) assert.ok(known.has(k) || helpers.has(k), `porthole-config sets ${k}, which no service reads`)
  const allSecrets = new Set(SERVICES.flatMap(s => s.secrets))
  for (const s of SERVICES) {
    const d = docs.find(x => x.obj.kind === 'Deployment' && x.obj.spec.template.spec.containers.some((c: Obj) => c.args?.[0] === s.name))?.obj
    assert.ok(d !== undefined, `no Deployment runs ${s.name}`)
    assert.ok(d.spec.replicas >= 2, `${s.name}: one replica is no deployment past one host`)
    const c = d.spec.template.spec.containers[0]
    const ports = new Set(c.ports.map((p: Obj) => p.containerPort))
    assert.equal(c.readinessProbe.httpGet.path, '/readyz', s.name)
    assert.equal(c.livenessProbe.httpGet.path, '/healthz', s.name)
    assert.ok(ports.has(c.readinessProbe.httpGet.port) && ports.has(c.livenessProbe.httpGet.port), `${s.name}: probes on a port the container does not serve`)
    for (const e of c.env as Obj[]) {
      assert.ok(known.has(e.name) || helpers.has(e.name), `${s.name}: ${e.name} is not a setting`)
      if (allSecrets.has(e.name)) assert.ok(s.secrets.includes(e.name), `${s.name} is given ${e.name}, another service's secret`)
      if (allSecrets.has(e.name)) assert.ok(e.valueFrom?.secretKeyRef !== undefined, `${s.name}: ${e.name} must come from a Secret, not a value`)
    }
    for (const ref of c.envFrom ?? []) {
      if (ref.configMapRef !== undefined) assert.ok(docs.some(x => x.obj.kind === 'ConfigMap' && x.obj.metadata.name === ref.configMapRef.name), `${s.name}: ConfigMap ${ref.configMapRef.name} is not in deploy/kubernetes`)
    }
    assert.ok(docs.some(x => x.obj.kind === 'PodDisruptionBudget' && x.obj.spec.selector.matchLabels['app.kubernetes.io/name'] === d.metadata.name), `${s.name}: no PodDisruptionBudget`)
  }
  // The agents reach libvirt: the node's socket is mounted where qemu:///system looks for it.
  const agents = docs.find(x => x.obj.kind === 'Deployment' && x.obj.metadata.name === 'porthole-agents')?.obj
  assert.ok(agents.spec.template.spec.containers[0].volumeMounts.some((m: Obj) => m.mountPath === '/var/run/libvirt'))
  // RabbitMQ of three nodes through the operator, Redis with three Sentinels, and guacd.
  assert.equal(docs.find(x => x.obj.kind === 'RabbitmqCluster')?.obj.spec.replicas, 3)
  assert.equal(docs.find(x => x.obj.kind === 'StatefulSet' && x.obj.metadata.name === 'porthole-redis-sentinel')?.obj.spec.replicas, 3)
  assert.ok(docs.some(x => x.obj.kind === 'Deployment' && x.obj.metadata.name === 'porthole-guacd'))
})
