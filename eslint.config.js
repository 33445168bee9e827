// One lint setup for the whole repository: typescript-eslint's recommended rules on every workspace, and
// Porthole's own rules on the direction of imports (scripts/lint/porthole-rules.mjs, proven by
// test/e2e/layers.test.ts): services → @porthole/shared → @porthole/contracts; nothing imports a service;
// packages only through their `exports`; no import through a variable.
import js from '@eslint/js'
import tseslint from 'typescript-eslint'
import porthole from './scripts/lint/porthole-rules.mjs'

export default tseslint.config(
  { ignores: ['**/dist/**', '**/node_modules/**', '**/vendor/**', '**/public/vendor/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: 'readonly', console: 'readonly', URL: 'readonly', Buffer: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', AbortController: 'readonly', AbortSignal: 'readonly', structuredClone: 'readonly', fetch: 'readonly', TextEncoder: 'readonly', TextDecoder: 'readonly', setImmediate: 'readonly', queueMicrotask: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      'porthole/layers': 'error',
      'porthole/static-imports': 'error',
      'porthole/exports-only': ['error', {
        // The one reach into a package's files: guacamole-lite's ClientConnection, driven without its Server
        // (see the top of guac.ts), and its Crypt, against which the test checks our tokens. Both are pinned
        // by the exact version in services/console-gateway/package.json; an upgrade re-reads these files.
        allow: {
          'guacamole-lite/lib/ClientConnection.js': ['services/console-gateway/src/guac.ts'],
          'guacamole-lite/lib/Crypt.js': ['services/console-gateway/test/guac.test.ts']
        }
      }]
    }
  },
  { files: ['**/*.{js,mjs,ts}'], plugins: { porthole } },
  // Who may import the broker, Redis and libvirt clients: the runtime layer's AMQP client and stores hold the
  // first two (services use those), and only the agents talk to libvirt.
  ...[
    { files: ['services/agents/src/**/*.ts'], banned: ['amqplib', 'ioredis'] },
    { files: ['services/api/src/**/*.ts', 'services/receiver/src/**/*.ts', 'services/console-gateway/src/**/*.ts', 'packages/contracts/src/**/*.ts'], banned: ['amqplib', 'ioredis', '@unraid/libvirt'] },
    { files: ['packages/shared/src/**/*.ts'], banned: ['@unraid/libvirt'] }
  ].map(({ files, banned }) => ({
    files,
    rules: { 'no-restricted-imports': ['error', { paths: banned.map(name => ({ name, message: { amqplib: 'use @porthole/shared/amqp', ioredis: 'use @porthole/shared/store', '@unraid/libvirt': 'only services/agents talks to libvirt' }[name] })) }] }
  })),
  {
    // The contract layer runs in a browser page as well as in Node: no Node globals either.
    files: ['packages/contracts/src/**/*.ts'],
    rules: { 'no-restricted-globals': ['error', ...['process', 'Buffer', 'require', 'module', '__dirname', '__filename', 'global', 'setImmediate'].map(name => ({ name, message: 'the contract layer uses nothing a browser lacks' }))] }
  },
  {
    // The operators' dashboard, served by the API.
    files: ['services/api/public/**/*.js'],
    languageOptions: { globals: { window: 'readonly', document: 'readonly', location: 'readonly', EventSource: 'readonly', CSS: 'readonly', Node: 'readonly', URLSearchParams: 'readonly' } }
  },
  {
    // Browser code served by the console gateway.
    files: ['services/console-gateway/public/**/*.js'],
    languageOptions: { globals: { window: 'readonly', document: 'readonly', location: 'readonly', WebSocket: 'readonly', performance: 'readonly' } }
  }
)
