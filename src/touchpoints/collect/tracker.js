/*! touchpoints.js — the first-party tracker of Touchpoints (Apache-2.0).
 *
 * Segment-spec calls (tp.page, tp.track, tp.identify) plus automatic click and scroll
 * depth capture, sent in batches to the collector's POST /v1/batch. With
 * `requireConsent: true` nothing is sent and no identifier is stored until
 * tp.consent({analytics: true}). Hand-written ES2017, no dependencies, no build step;
 * docs/tracker.md describes every event and setting.
 */
(function () {
  "use strict";

  var VERSION = "0.1.0";
  var COOKIE = "tp_aid"; // the anonymous id: a first-party cookie, mirrored in localStorage
  var USER_KEY = "tp_uid"; // the user id of tp.identify, localStorage
  var CONSENT_KEY = "tp_consent"; // the visitor's last choice (no identifier), localStorage
  var RETRY_KEY = "tp_retry"; // batches not yet delivered, localStorage
  var YEAR_S = 365 * 24 * 3600;
  var MAX_KEPT = 500; // messages held for retry, at most (the oldest are dropped)
  var MAX_ATTEMPTS = 10;
  var BEACON_BYTES = 60000; // sendBeacon refuses bodies over 64 KB
  var DEPTHS = [25, 50, 75, 100];
  var INTERACTIVE = "a,button,input,select,textarea,label,summary,[role=button],[role=link]";

  var stub = window.tp;
  if (stub && stub.loaded) return; // the script included twice
  var queued = Array.isArray(stub) ? stub.slice() : [];
  var config = Object.assign(
    {
      writeKey: "",
      host: scriptOrigin(),
      requireConsent: false,
      flushInterval: 1000, // ms between sends of a partial batch
      batchSize: 20, // messages that trigger a send at once
      clicks: true,
      scroll: true,
    },
    (stub && stub.config) || {}
  );
  config.host = String(config.host).replace(/\/+$/, "");
  config.flushInterval = Number(config.flushInterval) >= 0 ? Number(config.flushInterval) : 1000;
  config.batchSize = Math.max(1, Math.min(100, Number(config.batchSize) || 20));

  var state = {
    consent: readJSON(CONSENT_KEY), // {purposes, policy_version} or null
    anonymousId: null,
    userId: null,
    waiting: [], // messages made before consent: sent once it is given
    outbox: [], // messages to send in the next batch
    retry: [], // batches to deliver, new or failed: {batch, attempts, due}
    timer: null,
    sending: false,
    restored: false,
    depths: {},
  };

  // -- storage --------------------------------------------------------------------------

  function readCookie(name) {
    var parts = document.cookie ? document.cookie.split("; ") : [];
    for (var i = 0; i < parts.length; i++) {
      var eq = parts[i].indexOf("=");
      if (parts[i].slice(0, eq) === name) return decodeURIComponent(parts[i].slice(eq + 1));
    }
    return null;
  }

  function writeCookie(name, value, maxAge) {
    var secure = location.protocol === "https:" ? "; Secure" : "";
    document.cookie =
      name + "=" + encodeURIComponent(value) + "; Max-Age=" + maxAge + "; Path=/; SameSite=Lax" +
      secure;
  }

  function local(name, value) {
    // get (value undefined), set, or remove (value null); storage may be disabled
    try {
      if (value === undefined) return window.localStorage.getItem(name);
      if (value === null) window.localStorage.removeItem(name);
      else window.localStorage.setItem(name, value);
    } catch (e) {
      return null;
    }
    return null;
  }

  function readJSON(name) {
    try {
      return JSON.parse(local(name) || "null");
    } catch (e) {
      return null;
    }
  }

  // -- consent --------------------------------------------------------------------------

  function purposeKey(name) {
    return String(name).trim().replace(/[\s-]+/g, "_").toLowerCase();
  }

  function granted(consent) {
    var purposes = (consent && consent.purposes) || {};
    for (var name in purposes) {
      if (purposeKey(name) !== "analytics") continue;
      var value = purposes[name];
      return value === true || String(value).toLowerCase() === "granted";
    }
    return false;
  }

  function open() {
    // may events be sent and identifiers stored? An explicit choice decides; without
    // one, only when the site does not require consent.
    return state.consent ? granted(state.consent) : !config.requireConsent;
  }

  // -- identity -------------------------------------------------------------------------

  function uuid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    var b = new Uint8Array(16);
    crypto.getRandomValues(b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    var h = Array.prototype.map.call(b, function (x) {
      return (x + 0x100).toString(16).slice(1);
    });
    return [h.slice(0, 4), h.slice(4, 6), h.slice(6, 8), h.slice(8, 10), h.slice(10)]
      .map(function (part) {
        return part.join("");
      })
      .join("-");
  }

  function anonymousId() {
    // the visitor's id, read or made and stored; call only while open()
    if (!state.anonymousId) {
      state.anonymousId = readCookie(COOKIE) || local(COOKIE) || uuid();
      writeCookie(COOKIE, state.anonymousId, YEAR_S); // a year from the last visit
      local(COOKIE, state.anonymousId);
    }
    return state.anonymousId;
  }

  function forget() {
    // remove every identifier this script stored (consent withdrawn, or tp.reset)
    writeCookie(COOKIE, "", 0);
    local(COOKIE, null);
    local(USER_KEY, null);
    local(RETRY_KEY, null);
    state.anonymousId = null;
    state.userId = null;
  }

  // -- context --------------------------------------------------------------------------

  function pageInfo() {
    return {
      path: location.pathname,
      url: location.href,
      title: document.title,
      referrer: document.referrer,
      search: location.search,
    };
  }

  function campaign() {
    var params = new URLSearchParams(location.search);
    var names = { source: "source", medium: "medium", campaign: "name", term: "term",
      content: "content" };
    var found = null;
    Object.keys(names).forEach(function (utm) {
      var value = params.get("utm_" + utm);
      if (value) {
        found = found || {};
        found[names[utm]] = value;
      }
    });
    return found;
  }

  function context() {
    var out = {
      page: pageInfo(),
      userAgent: navigator.userAgent,
      locale: navigator.language,
      library: { name: "touchpoints.js", version: VERSION },
      screen: { width: screen.width, height: screen.height },
    };
    var utm = campaign();
    if (utm) out.campaign = utm;
    return out;
  }

  // -- the queue --------------------------------------------------------------------------

  function enqueue(message) {
    message.messageId = uuid();
    message.timestamp = new Date().toISOString();
    message.context = context();
    if (open()) {
      stamp(message);
      state.outbox.push(message);
      schedule();
    } else if (!state.consent) {
      // no choice yet: hold the message (in memory only) until the visitor chooses
      state.waiting.push(message);
      if (state.waiting.length > MAX_KEPT) state.waiting.shift();
    } // refused: dropped
  }

  function stamp(message) {
    // the ids and consent, added when the message may leave the page
    message.anonymousId = anonymousId();
    if (state.userId) message.userId = state.userId;
    if (state.consent) message.context.consent = state.consent;
  }

  function schedule() {
    if (state.outbox.length >= config.batchSize) {
      flush();
    } else if (!state.timer) {
      state.timer = setTimeout(flush, config.flushInterval);
    }
  }

  function body(batch) {
    return JSON.stringify({ batch: batch, sentAt: new Date().toISOString(),
      writeKey: config.writeKey });
  }

  function flush() {
    clearTimeout(state.timer);
    state.timer = null;
    if (state.outbox.length) {
      var batch = state.outbox.splice(0, config.batchSize);
      state.retry.push({ batch: batch, attempts: 0, due: 0 });
      while (state.retry.length > MAX_KEPT / config.batchSize) state.retry.shift(); // bounded
      if (state.outbox.length) schedule();
    }
    return send();
  }

  function send() {
    // deliver due batches one at a time; a failure is retried with a growing delay
    if (state.sending) return Promise.resolve();
    var now = Date.now();
    var next = state.retry.filter(function (item) {
      return item.due <= now;
    })[0];
    if (!next) return Promise.resolve();
    state.sending = true;
    return fetch(config.host + "/v1/batch", {
      method: "POST",
      headers: { "Content-Type": "text/plain" }, // a "simple" request: no CORS preflight
      body: body(next.batch),
      credentials: "omit",
    })
      .then(function (response) {
        // a client error is permanent (the collector keeps the bad messages); retrying
        // would not help. Rate limits and server errors are retried.
        return response.ok || (response.status < 500 && response.status !== 429);
      })
      .catch(function () {
        return false;
      })
      .then(function (delivered) {
        state.sending = false;
        if (delivered) {
          drop(next);
        } else {
          next.attempts += 1;
          if (next.attempts >= MAX_ATTEMPTS) drop(next);
          else next.due = Date.now() + Math.min(60000, 1000 * Math.pow(2, next.attempts - 1));
        }
        persist();
        if (state.retry.length) {
          var wait = Math.min.apply(null, state.retry.map(function (item) {
            return item.due;
          })) - Date.now();
          setTimeout(send, Math.max(0, wait));
        }
      });
  }

  function drop(item) {
    var i = state.retry.indexOf(item);
    if (i >= 0) state.retry.splice(i, 1);
  }

  function persist() {
    // undelivered messages survive a reload (bounded); the collector deduplicates them
    // by messageId should a copy have arrived after all
    if (!open()) return;
    var kept = [];
    state.retry.forEach(function (item) {
      kept = kept.concat(item.batch);
    });
    kept = kept.slice(-MAX_KEPT);
    local(RETRY_KEY, kept.length ? JSON.stringify(kept) : null);
  }

  function bytes(text) {
    return new Blob([text]).size; // as UTF-8
  }

  function beacon() {
    // the page is going away: hand everything not yet delivered to the browser
    clearTimeout(state.timer);
    state.timer = null;
    var all = [];
    state.retry.forEach(function (item) {
      all = all.concat(item.batch);
    });
    all = all.concat(state.outbox);
    if (!all.length || !navigator.sendBeacon) return;
    var url = config.host + "/v1/batch";
    var left = [];
    while (all.length) {
      var size = all.length;
      while (size > 1 && bytes(body(all.slice(0, size))) > BEACON_BYTES) {
        size = Math.ceil(size / 2);
      }
      var part = all.splice(0, size);
      if (!navigator.sendBeacon(url, body(part))) left = left.concat(part);
    }
    state.outbox = [];
    state.retry = left.length ? [{ batch: left, attempts: 1, due: 0 }] : [];
    persist();
  }

  // -- automatic capture ----------------------------------------------------------------

  function selector(el) {
    // a short CSS selector: the element and up to four ancestors, tag with #id or the
    // first two classes, stopping at an id
    var parts = [];
    for (var node = el; node && parts.length < 5; node = node.parentElement) {
      var tag = node.tagName.toLowerCase();
      if (tag === "html" || tag === "body") break;
      if (node.id) {
        parts.unshift(tag + "#" + CSS.escape(node.id));
        break;
      }
      var classes = (node.getAttribute("class") || "").split(/\s+/).filter(Boolean).slice(0, 2);
      parts.unshift(tag + classes.map(function (c) {
        return "." + CSS.escape(c);
      }).join(""));
    }
    return parts.join(" > ");
  }

  function visibleText(el) {
    // never what a visitor typed: form fields give no text
    if (/^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName) || el.isContentEditable) return "";
    var text = (el.innerText || el.textContent || "").replace(/\s+/g, " ").trim();
    return text.slice(0, 100);
  }

  function onClick(event) {
    var target = event.target && event.target.nodeType === 1 ? event.target : null;
    if (!target || target.closest("[data-tp-ignore]")) return;
    var el = target.closest(INTERACTIVE) || target;
    var root = document.documentElement;
    track("Element Clicked", {
      selector: selector(el),
      text: visibleText(el),
      x: Math.round(event.pageX),
      y: Math.round(event.pageY),
      viewport_width: window.innerWidth,
      viewport_height: window.innerHeight,
      page_width: root.scrollWidth,
      page_height: root.scrollHeight,
    });
  }

  function onScroll() {
    var height = document.documentElement.scrollHeight;
    if (!height) return;
    var seen = ((window.scrollY + window.innerHeight + 1) / height) * 100;
    DEPTHS.forEach(function (depth) {
      if (seen >= depth && !state.depths[depth]) {
        state.depths[depth] = true;
        track("Scroll Depth Reached", { depth: depth, page_height: height });
      }
    });
  }

  // -- the public calls -----------------------------------------------------------------

  function page(name, properties) {
    if (name && typeof name === "object") {
      properties = name;
      name = undefined;
    }
    state.depths = {}; // a new page view: its scroll depths count again
    var message = { type: "page", properties: Object.assign(pageInfo(), properties || {}) };
    if (name) message.name = String(name);
    enqueue(message);
  }

  function track(event, properties) {
    if (!event) return;
    enqueue({ type: "track", event: String(event), properties: properties || {} });
  }

  function identify(userId, traits) {
    if (userId && typeof userId === "object") {
      traits = userId;
      userId = undefined;
    }
    if (userId !== undefined && userId !== null && userId !== "") {
      state.userId = String(userId);
      if (open()) local(USER_KEY, state.userId);
    }
    enqueue({ type: "identify", traits: traits || {} });
  }

  function consent(purposes, options) {
    // record the visitor's choice (a "Consent Updated" event) and open or close the gate
    var choice = { purposes: Object.assign({}, purposes || {}) };
    var version = options && (options.policyVersion || options.policy_version);
    if (version) choice.policy_version = String(version);
    if (JSON.stringify(choice) === JSON.stringify(state.consent)) return; // unchanged
    var wasOpen = open();
    state.consent = choice;
    local(CONSENT_KEY, JSON.stringify(choice));
    var event = {
      type: "track",
      event: "Consent Updated",
      properties: JSON.parse(JSON.stringify(choice)),
      messageId: uuid(),
      timestamp: new Date().toISOString(),
      context: context(),
    };
    if (open()) {
      restore();
      var waiting = state.waiting.splice(0);
      waiting.forEach(stamp);
      stamp(event);
      state.outbox = state.outbox.concat([event], waiting);
      flush();
      return;
    }
    state.waiting = [];
    // a refusal is recorded too, under the id the visitor had if any (a withdrawal),
    // else under a random one that is never stored
    event.anonymousId =
      (wasOpen && state.anonymousId) || readCookie(COOKIE) || local(COOKIE) || uuid();
    if (state.userId) event.userId = state.userId;
    event.context.consent = choice;
    state.outbox = [];
    state.retry = [{ batch: [event], attempts: 0, due: 0 }];
    forget();
    send();
  }

  function reset() {
    // a new visitor on this device (after log-out): new anonymous id, no user id
    forget();
    if (open()) anonymousId();
  }

  function restore() {
    // what an earlier page view left: the user id and undelivered messages
    if (state.restored) return;
    state.restored = true;
    state.userId = local(USER_KEY) || state.userId;
    if (state.userId) local(USER_KEY, state.userId); // identified before consent
    var kept = readJSON(RETRY_KEY);
    if (Array.isArray(kept) && kept.length) {
      local(RETRY_KEY, null);
      state.retry.push({ batch: kept.slice(-MAX_KEPT), attempts: 0, due: 0 });
    }
  }

  function scriptOrigin() {
    var script = document.currentScript;
    if (!script) {
      var all = document.querySelectorAll("script[src]");
      for (var i = 0; i < all.length; i++) {
        if (/\/tp\.js(\?|$)/.test(all[i].src)) script = all[i];
      }
    }
    return script && script.src ? new URL(script.src, location.href).origin : location.origin;
  }

  var api = {
    loaded: true,
    version: VERSION,
    config: config,
    page: page,
    track: track,
    identify: identify,
    consent: consent,
    reset: reset,
    flush: function () {
      return flush();
    },
    anonymousId: function () {
      return open() ? anonymousId() : null;
    },
  };
  window.tp = api;

  if (open()) {
    restore();
    if (state.retry.length) send();
  }
  if (config.clicks) document.addEventListener("click", onClick, true);
  if (config.scroll) window.addEventListener("scroll", onScroll, { passive: true });
  window.addEventListener("pagehide", beacon);
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden") beacon();
  });
  queued.forEach(function (call) {
    var method = api[call[0]];
    if (typeof method === "function") method.apply(api, call.slice(1));
  });
})();
