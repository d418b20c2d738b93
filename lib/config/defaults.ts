/** Defaults live in the settings table's rows; this name stays for readers who look here. */
export { DEFAULTS } from './settings.js'
