/** The TCP e2e tests (tcp-suite.ts) on the node plane. */
import t from 'tap'
import { tcpTests } from './tcp-suite.js'

tcpTests(t, 'node')
