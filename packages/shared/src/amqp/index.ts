export * from './client.js'
export * from './topology.js'
export * from './poison.js'
export { brokerNodes, nodeAddress } from './nodes.js'
