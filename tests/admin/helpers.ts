/** Helpers for tests of the admin endpoint: HTTP requests to it and an l4lb that has one. */
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import http from 'node:http'
import { spawnL4lb, within, type L4lbProcess, type SpawnOptions } from '../helpers/index.js'

export interface Reply {
  status: number
  headers: http.IncomingHttpHeaders
  body: string
}

export interface RequestOptions {
  method?: string
  token?: string
  body?: string
  headers?: Record<string, string>
}

/** One request to 127.0.0.1:port, bounded; the whole body is read. */
export function request(port: number, urlPath: string, options: RequestOptions = {}): Promise<Reply> {
  const headers: Record<string, string> = { ...options.headers }
  if (options.token) headers.authorization = `Bearer ${options.token}`
  if (options.body !== undefined) headers['content-type'] = 'application/json'
  return within(5000, `${options.method ?? 'GET'} ${urlPath}`, new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: urlPath, method: options.method ?? 'GET', headers, agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (c: string) => (body += c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }))
    })
    req.on('error', reject)
    req.end(options.body)
  }))
}

/** Starts bin/l4lb with `--admin 127.0.0.1:0` added; returns it and the admin port. */
export async function spawnWithAdmin(args: string[], options: SpawnOptions = {}): Promise<{ lb: L4lbProcess; adminPort: number }> {
  const lb = await spawnL4lb([...args, '--admin', '127.0.0.1:0'], options)
  try {
    const line = await lb.waitForLog('admin endpoint listening', (l) => l.msg === 'admin endpoint listening')
    return { lb, adminPort: Number(String(line.admin).split(':').pop()) }
  } catch (err) {
    await lb.stop()
    throw err
  }
}

/** The value of one sample line of Prometheus text, or undefined. */
export function sampleValue(metrics: string, series: string): number | undefined {
  for (const line of metrics.split('\n')) {
    if (line.startsWith(series + ' ')) return Number(line.slice(series.length + 1))
  }
  return undefined
}

/** promtool (Debian package prometheus; .ci/run installs it), or undefined. */
export const PROMTOOL = ['/usr/bin/promtool', '/usr/local/bin/promtool'].find((p) => existsSync(p))
export const PROMTOOL_SKIP = PROMTOOL ? false : 'promtool not installed (Debian package prometheus; .ci/run installs it)'

/** `promtool check metrics` over `text`: its exit code and what it printed (lint findings). */
export function promtool(text: string): Promise<{ code: number | null; output: string }> {
  return within(10_000, 'promtool check metrics', new Promise((resolve, reject) => {
    const p = spawn(PROMTOOL!, ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] })
    let output = ''
    p.stdout.on('data', (c: Buffer) => (output += c.toString()))
    p.stderr.on('data', (c: Buffer) => (output += c.toString()))
    p.on('error', reject)
    p.on('close', (code) => resolve({ code, output }))
    p.stdin.end(text)
  }))
}
