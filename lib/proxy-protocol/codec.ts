/**
 * The one door to proxy-protocol-js (CommonJS). Everything else in this module imports the
 * package from here, so replacing it later touches one file.
 */
import ppjs from 'proxy-protocol-js'

export const {
  V1ProxyProtocol,
  V2ProxyProtocol,
  Peer,
  INETProtocol,
  Command,
  TransportProtocol,
  AddressFamilyType,
  IPv4Address,
  IPv4ProxyAddress,
  IPv6Address,
  IPv6ProxyAddress,
  UnspecProxyAddress,
} = ppjs

export type V2Parsed = InstanceType<typeof ppjs.V2ProxyProtocol>
