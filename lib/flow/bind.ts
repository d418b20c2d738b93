/** Binding a listener, with the one fallback both data paths share. */
import { formatHostPort, type HostPort } from '../address/index.js'
import { errorCode, ListenError, listenProblem } from '../errors.js'

/**
 * Runs `bind` for `address`; `:port` means every address, so on a host without IPv6 a failed
 * `::` is retried as `0.0.0.0`. Any other failure is a ListenError naming the address
 * (`label` prefixes it, e.g. "udp ").
 */
export async function bindWithFallback<T>(address: HostPort, label: string, bind: (address: HostPort) => Promise<T>): Promise<T> {
  try {
    return await bind(address)
  } catch (err) {
    const code = errorCode(err)
    if (address.host === '::' && (code === 'EAFNOSUPPORT' || code === 'EADDRNOTAVAIL')) {
      return bindWithFallback({ host: '0.0.0.0', port: address.port, family: 4 }, label, bind)
    }
    throw new ListenError(`${label}${formatHostPort(address.host, address.port)}`, listenProblem(code), err)
  }
}
