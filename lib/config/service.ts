/**
 * Validation of one service, shared by flags and the YAML file: both produce the same raw shape
 * (camelCase keys, strings where the user typed text). The rows of the settings table read each
 * key; what is checked here is what spans keys.
 */
import { isMapping, type Path, type Problems } from './problems.js'
import { SERVICE } from './settings.js'
import { readSection } from './table.js'
import type { ServiceConfig } from './types.js'

export { Problems, checkUnknownKeys, type Path, type KeyNamer } from './problems.js'

export function validateService(raw: unknown, path: Path, fallbackName: string, problems: Problems): ServiceConfig | undefined {
  if (!isMapping(raw)) return problems.add(path, raw, 'a service must be a mapping')
  const s = readSection(SERVICE, raw, path, problems)
  const at = (key: string): Path => [...path, key]
  const v2 = s.proxyProtocol === 'v2'
  if (s.acceptProxyStrict && s.acceptProxy.length === 0) problems.add(at('acceptProxyStrict'), raw.acceptProxyStrict, 'needs acceptProxy (the CIDRs whose PROXY headers are trusted)')
  if (s.proxyV2Crc32c && !v2) problems.add(at('proxyV2Crc32c'), raw.proxyV2Crc32c, 'only applies with proxyProtocol v2')
  if (s.proxyForwardTlvs && (!v2 || s.acceptProxy.length === 0)) problems.add(at('proxyForwardTlvs'), raw.proxyForwardTlvs, 'only applies with proxyProtocol v2 and acceptProxy')
  if (s.proxyUdpFirstOnly && !v2) problems.add(at('proxyUdpFirstOnly'), raw.proxyUdpFirstOnly, 'only applies with proxyProtocol v2')
  if (s.proxyProtocol === 'v1' && s.protocols.includes('udp')) problems.add(at('proxyProtocol'), raw.proxyProtocol, 'PROXY v1 has no datagram form: use v2 for udp')
  return { ...s, name: s.name ?? fallbackName }
}
