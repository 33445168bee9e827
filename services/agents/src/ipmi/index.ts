export { createIpmiDriver, type IpmiDriverOptions } from './driver.js'
