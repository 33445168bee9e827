export * from './client.js'
export * from './topology.js'
