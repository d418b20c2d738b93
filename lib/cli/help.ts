/**
 * Help that reads well in a terminal: at most 100 columns, long option terms on a line of their
 * own instead of pushing every description off to the right, the main flags on `l4lb --help`
 * (run is the default command, so its flags are the ones people need first), and a
 * did-you-mean for mistyped subcommands. Everything here reads the commander program, so it
 * stays true when options are added.
 */
import { editDistance } from '../config/problems.js'
import type { Command, Help, HelpConfiguration, Option } from 'commander'

/** Help never gets wider than this, whatever the terminal (issue 16: run --help was 209 wide). */
export const MAX_HELP_WIDTH = 100
/** Option terms longer than this get their own line; descriptions start at this column. */
const MAX_TERM_WIDTH = 30

export function helpConfiguration(): HelpConfiguration {
  return {
    helpWidth: Math.min(process.stdout.columns || 80, MAX_HELP_WIDTH),
    padWidth(cmd: Command, helper: Help): number {
      return Math.min(MAX_TERM_WIDTH, Math.max(
        helper.longestOptionTermLength(cmd, helper),
        helper.longestSubcommandTermLength(cmd, helper),
        helper.longestArgumentTermLength(cmd, helper),
      ))
    },
    formatItem(term: string, termWidth: number, description: string, helper: Help): string {
      const width = helper.helpWidth ?? 80
      const indent = 2
      const spacer = 2
      const column = indent + termWidth + spacer
      const wrapped = helper.boxWrap(description, width - column).replace(/\n/g, '\n' + ' '.repeat(column))
      if (!description) return ' '.repeat(indent) + term
      if (term.length > termWidth) return `${' '.repeat(indent)}${term}\n${' '.repeat(column)}${wrapped}`
      return `${' '.repeat(indent)}${term.padEnd(termWidth)}${' '.repeat(spacer)}${wrapped}`
    },
  }
}

/** The flags DESIGN calls the names users see, in that order: what `l4lb --help` lists. */
export const MAIN_FLAGS = [
  '--listen', '--backend', '--protocol', '--balance', '--hash-key', '--proxy-protocol', '--accept-proxy',
  '--check', '--check-interval', '--check-timeout', '--rise', '--fall', '--connect-timeout', '--idle-timeout',
  '--retries', '--max-conns', '--admin', '--log-level', '--config',
]

/** "Main options of run" for the top-level help, formatted like commander's own lists. */
export function mainFlagsHelp(run: Command, helper: Help): string {
  const options = MAIN_FLAGS.map((flag) => run.options.find((o: Option) => o.long === flag)).filter((o): o is Option => o !== undefined)
  const termWidth = Math.min(MAX_TERM_WIDTH, Math.max(...options.map((o) => helper.optionTerm(o).length)))
  const lines = options.map((o) => helper.formatItem(helper.optionTerm(o), termWidth, helper.optionDescription(o), helper))
  return `\nMain options (of run, the default command; \`l4lb run --help\` lists all ${run.options.length}):\n${lines.join('\n')}\n`
}


/**
 * When the first argument is a word that is not a subcommand, the user meant a subcommand:
 * without this, run (the default) gets it and says "too many arguments for 'run'". Returns the
 * one line to print, or undefined when argv starts with an option or a known command.
 */
export function unknownCommandLine(program: Command, args: readonly string[]): string | undefined {
  const first = args[0]
  if (first === undefined || first.startsWith('-')) return undefined
  const names = program.commands.flatMap((c) => [c.name(), ...c.aliases()]).concat('help')
  if (names.includes(first)) return undefined
  const typed = first.toLowerCase()
  // A prefix ("stat", "install") is what people type when they half-remember a name.
  const prefixed = typed.length >= 3 ? names.find((n) => n.startsWith(typed)) : undefined
  if (prefixed) return `unknown command '${first}' (did you mean '${prefixed}'?)`
  let best: string | undefined
  let bestDistance = Infinity
  for (const name of names) {
    const d = editDistance(typed, name)
    if (d < bestDistance) {
      best = name
      bestDistance = d
    }
  }
  // Within 2 edits (1 for short words): close enough to be a typo.
  const near = best !== undefined && bestDistance <= Math.max(1, Math.min(2, first.length - 2))
  if (near) return `unknown command '${first}' (did you mean '${best}'?)`
  return `unknown command '${first}' (commands: ${names.filter((n) => n !== 'help').join(', ')}; options start with -, see l4lb --help)`
}
