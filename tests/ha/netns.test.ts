/**
 * The two namespace scenarios of issue 15, one after the other in one file: each runs two l4lbs,
 * routing daemons and clients, and on a shared 2-core box they would starve each other's timers
 * if tap ran them side by side. Skipped with a reason without root, `ip netns`, keepalived or BIRD.
 */
import t from 'tap'
import { BGP_SKIP, BGP_TITLE, bgpScenario } from './bgp.js'
import { VRRP_SKIP, VRRP_TITLE, vrrpScenario } from './vrrp.js'

t.test(VRRP_TITLE, { skip: VRRP_SKIP }, vrrpScenario)
t.test(BGP_TITLE, { skip: BGP_SKIP }, bgpScenario)
