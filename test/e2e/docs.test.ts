// The README's settings table is generated from the services' own declarations; this keeps it complete.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { REPO_ROOT } from '@porthole/shared/testing'

test('README.md lists every setting every service reads', async () => {
  const { stdout } = await promisify(execFile)(process.execPath, ['scripts/settings-table.mjs', '--check'], { cwd: REPO_ROOT })
  assert.match(stdout, /lists all \d+ settings/)
})
