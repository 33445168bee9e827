export { createOvirtDriver, ovirtPowerState, type OvirtDriverOptions } from './driver.js'
