/**
 * The one door to proxy-protocol-js (CommonJS). Everything else in this module imports the
 * package from here, so replacing it later touches one file. It builds the headers we send
 * (encode.ts); received headers are parsed once, incrementally, by decode.ts.
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
