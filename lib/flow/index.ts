/**
 * What every data path shares (DESIGN: listener → admit → … → close), whichever protocol or
 * plane moves the bytes: admission, the key, the snapshot a flow carries, what a backend
 * leaving means for a flow, binding, the table of open flows and their log lines.
 */
export { Admission, REFUSAL_REASONS, type RefusalReason, type RefusalCounts } from './admit.js'
export { bindWithFallback } from './bind.js'
export { FlowContext } from './context.js'
export { FlowLog, isOrdinaryClose, type LogConnections } from './log.js'
export { dispositionOf, type Disposition } from './policy.js'
export { FlowTable } from './table.js'
export { DataPath } from './path.js'
