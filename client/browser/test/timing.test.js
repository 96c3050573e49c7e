// The client's timing rules, without a browser.
import { test } from "node:test";
import assert from "node:assert/strict";
import { browserFamily, heartbeatDue, retryDelay } from "../sessionfold.js";

const s = (o) => ({ visible: true, ended: false, lastInput: 0, lastBeat: null, ...o });

test("a heartbeat is due only while visible, used, and after the interval", () => {
  assert.equal(heartbeatDue(s({}), 1_000, 30_000, 60_000), true, "first beat");
  assert.equal(heartbeatDue(s({ lastBeat: 1_000 }), 30_999, 30_000, 60_000), false);
  assert.equal(heartbeatDue(s({ lastBeat: 1_000, lastInput: 20_000 }), 31_000, 30_000, 60_000), true);
  assert.equal(heartbeatDue(s({ visible: false }), 1_000, 30_000, 60_000), false, "hidden");
  assert.equal(heartbeatDue(s({ ended: true }), 1_000, 30_000, 60_000), false, "ended");
  assert.equal(heartbeatDue(s({ lastInput: 0 }), 60_000, 30_000, 60_000), false, "idle");
  assert.equal(heartbeatDue(s({ lastInput: 1 }), 60_000, 30_000, 60_000), true, "just not idle");
  assert.equal(heartbeatDue(s({ lastInput: null }), 5, 30_000, 60_000), false, "no input yet");
});

test("retries back off by doubling up to the cap", () => {
  assert.deepEqual(
    [1, 2, 3, 4, 5, 6, 7].map((a) => retryDelay(a, 1_000, 30_000)),
    [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000],
  );
});

test("the browser family comes from the user agent", () => {
  const ua = {
    Chrome: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36",
    Edge: "Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 Chrome/131.0 Safari/537.36 Edg/131.0",
    Firefox: "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    Safari: "Mozilla/5.0 (Macintosh) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
  };
  for (const [family, agent] of Object.entries(ua)) assert.equal(browserFamily(agent), family);
  assert.equal(browserFamily("curl/8"), undefined);
});
