/**
 * The status page served by the admin listener at `GET /`: one HTML document, its stylesheet and
 * its script as three routes of the listener itself — no build step, no CDN, nothing fetched
 * from anywhere else (the Content-Security-Policy sent with the page says so to the browser).
 *
 * They are strings in a module rather than files next to it: `tsc` copies no asset into dist/,
 * and the page must ship in the package with the code that serves it.
 *
 * The script builds the DOM with textContent and attributes only, never from HTML text, so a
 * service or backend name like `<script>` is shown, not run.
 */
import { PAGE_SCRIPT } from './script.js'
import { PAGE_STYLE } from './style.js'

export { PAGE_SCRIPT, PAGE_STYLE }

export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>l4lb status</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="page.css">
<script src="page.js" defer></script>
</head>
<body>
<header>
  <h1>l4lb</h1>
  <span id="summary"></span>
  <span class="legend"><i class="st-up">up</i><i class="st-down">down</i><i class="st-starting">starting</i><i class="st-drain">drain</i><i class="st-maint">maint</i></span>
  <span id="toast" role="status"></span>
  <span id="draining"></span>
  <span id="conn" class="conn">connecting…</span>
  <form id="login" hidden>
    <label for="token" id="login-why">admin token</label>
    <input id="token" type="password" autocomplete="off" placeholder="bearer token">
    <button type="submit">unlock</button>
  </form>
</header>
<main id="services"></main>
</body>
</html>
`

/** Sent with the page and its assets: nothing but this listener's own script, style and feed. */
export const PAGE_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
