export { UdpService, type UdpStats, type UdpSessionInfo } from './service.js'
export { UdpSession, MAX_PENDING_DATAGRAMS, type SessionCloseReason } from './session.js'
