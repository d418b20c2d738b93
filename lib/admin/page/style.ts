/** The status page's stylesheet: dense like HAProxy's stats page, colours by backend state. */
export const PAGE_STYLE = `
:root {
  --bg: #f6f7f9; --fg: #1d232b; --muted: #68717d; --line: #d9dde3; --head: #26313d;
  --up: #1f9d55; --up-bg: #dcf5e5; --down: #d1343d; --down-bg: #fde0e1; --drain: #2f6fd6; --drain-bg: #dde9fd;
  --maint: #8a5a12; --maint-bg: #f5e6c8; --starting: #b08900; --starting-bg: #fff4c2;
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg); font: 13px/1.35 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
header { position: sticky; top: 0; z-index: 1; display: flex; gap: 14px; align-items: center; flex-wrap: wrap;
  padding: 7px 14px; background: var(--head); color: #e9eef4; }
h1 { margin: 0; font-size: 16px; letter-spacing: .5px; }
#summary { color: #b8c3cf; font-variant-numeric: tabular-nums; }
.legend { display: flex; gap: 4px; }
.legend i { font-style: normal; font-size: 11px; padding: 1px 6px; border-radius: 3px; }
.conn { font-size: 12px; color: #b8c3cf; }
.conn::before { content: ""; display: inline-block; width: 8px; height: 8px; border-radius: 50%; margin-right: 5px; background: #8a939d; }
.conn.live::before { background: #3ddc84; }
.conn.lost::before { background: #ff5c5c; }
#login { display: flex; gap: 6px; align-items: center; }
#login[hidden] { display: none; }
#login label { font-size: 12px; color: #ffd479; }
#login input { width: 180px; padding: 3px 6px; border: 1px solid #56636f; border-radius: 3px; background: #11181f; color: #fff; }
main { padding: 10px 14px 16px; }
section { margin-bottom: 14px; background: #fff; border: 1px solid var(--line); border-radius: 4px; overflow-x: auto; }
section > h2 { display: flex; gap: 14px; align-items: baseline; flex-wrap: wrap; margin: 0; padding: 6px 10px;
  font-size: 13px; font-weight: 600; background: #eceff3; border-bottom: 1px solid var(--line); }
section > h2 .name { font-size: 14px; }
section > h2 .meta { display: inline-flex; gap: 14px; flex-wrap: wrap; font-weight: 400; color: var(--muted); font-variant-numeric: tabular-nums; }
section > h2 .meta b { color: var(--fg); font-weight: 600; }
.badge { font-size: 11px; font-weight: 600; padding: 0 6px; border-radius: 3px; background: #e3e6ea; color: var(--fg); }
.badge.warn { background: var(--down-bg); color: var(--down); }
table { width: 100%; min-width: 1240px; table-layout: fixed; border-collapse: collapse; font-variant-numeric: tabular-nums; }
/* the same columns in every service's table, so they line up down the page */
th:nth-child(1) { width: 190px; } th:nth-child(2) { width: 92px; } th:nth-child(3) { width: 96px; }
th:nth-child(4) { width: 62px; } th:nth-child(5) { width: 72px; } th:nth-child(6) { width: 176px; }
th:nth-child(7), th:nth-child(8) { width: 88px; } th:nth-child(9) { width: 112px; } th:nth-child(10) { width: 72px; }
th:nth-child(12) { width: 142px; }
th { text-align: left; font-size: 11px; font-weight: 600; color: var(--muted); text-transform: uppercase; letter-spacing: .3px;
  padding: 4px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; }
td { padding: 3px 8px; border-bottom: 1px solid #eef0f3; white-space: nowrap; vertical-align: middle; overflow: hidden; text-overflow: ellipsis; }
tr:last-child td { border-bottom: 0; }
td.num, th.num { text-align: right; }
td.addr { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12px; }
td.addr small { color: var(--muted); font-family: system-ui, sans-serif; margin-left: 4px; }
td.why { color: var(--muted); }
.state { display: inline-block; min-width: 62px; text-align: center; font-size: 11px; font-weight: 700; text-transform: uppercase;
  padding: 1px 6px; border-radius: 3px; }
.st-up { background: var(--up-bg); color: var(--up); }
.st-down { background: var(--down-bg); color: var(--down); }
.st-drain { background: var(--drain-bg); color: var(--drain); }
.st-maint { background: var(--maint-bg); color: var(--maint); }
.st-starting { background: var(--starting-bg); color: var(--starting); }
tr.row-down td:first-child { box-shadow: inset 3px 0 var(--down); }
tr.row-up td:first-child { box-shadow: inset 3px 0 var(--up); }
tr.row-drain td:first-child { box-shadow: inset 3px 0 var(--drain); }
tr.row-maint td:first-child { box-shadow: inset 3px 0 var(--maint); }
tr.row-starting td:first-child { box-shadow: inset 3px 0 var(--starting); }
.strip { display: inline-flex; gap: 2px; vertical-align: middle; }
.strip i { display: inline-block; width: 7px; height: 14px; border-radius: 1px; background: #e4e7eb; }
.strip i.ok { background: var(--up); }
.strip i.fail { background: var(--down); }
.strip i.passive { background: repeating-linear-gradient(45deg, var(--down) 0 2px, #f6a5a9 2px 4px); }
.spark { display: inline-flex; gap: 6px; align-items: center; }
.spark svg { width: 120px; height: 20px; background: #f3f5f8; border-radius: 2px; }
.spark polyline { fill: none; stroke: #2f6fd6; stroke-width: 1.2; }
.spark span { min-width: 28px; text-align: right; }
.nocheck { color: var(--muted); font-size: 12px; }
.actions { display: inline-flex; gap: 4px; }
.actions button, #login button { font: inherit; font-size: 11px; padding: 1px 8px; border-radius: 3px; cursor: pointer;
  border: 1px solid #b7bec7; background: #fff; color: var(--fg); }
.actions button:hover { background: #eef2f7; }
.actions button[data-action="drain"] { border-color: var(--drain); color: var(--drain); }
.actions button[data-action="maint"] { border-color: var(--maint); color: var(--maint); }
.actions button[data-action="enable"] { border-color: var(--up); color: var(--up); }
.actions button[hidden] { display: none; }
.muted { color: var(--muted); }
#toast { margin-left: auto; font-size: 12px; color: #b7f0c9; }
#toast.error { color: #ffb3b3; }
#draining { font-size: 12px; color: #ffd479; }
.empty { padding: 20px; color: var(--muted); }
`
