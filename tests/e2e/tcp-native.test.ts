/** The TCP e2e tests (tcp-suite.ts) on the native plane; skipped, with the reason, without the addon. */
import t from 'tap'
import { tcpTests } from './tcp-suite.js'

tcpTests(t, 'native')
