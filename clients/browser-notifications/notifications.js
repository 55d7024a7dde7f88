/*! Courier browser notifications client. No dependencies; served by every Courier
 * node as GET /notifications.js (this classic script) and GET /notifications.mjs
 * (an ES module exporting the same `notifications`). Types: notifications.d.ts.
 *
 *   <script src="https://courier.example/notifications.js" data-courier-auto
 *           data-token="…"></script>                 → window.courierNotifications
 *   const n = Courier.notifications({ url, tokenProvider });
 *
 * It reads GET /notifications/stream with fetch (so a token travels in a header,
 * not the URL, and `Last-Event-ID` is sent on every reconnect, not only on the
 * browser's own), shows `type: "generic"` notifications as toasts, and dispatches
 * `courier:notification` / `courier:notification-status` events on `document`.
 */
(function (root) {
  "use strict";
  if (root.Courier && root.Courier.notifications) return; // loaded twice: keep the first

  const doc = root.document;
  const MODES = {
    queued: { dismiss: "server", autoClear: false },
    timeseries: { dismiss: false, autoClear: 8000 },
    ephemeral: { dismiss: false, autoClear: 5000 },
  };
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 30000;
  const HIDDEN_RECONNECT_MS = 30000; // persistConnection: reconnect after longer hidden
  const TOKEN_MARGIN_S = 30; // refresh a token that expires sooner than this
  const SEEN_LIMIT = 2000; // ids remembered for deduplication
  const MOBILE = "(max-width: 767.98px)";

  // Apps restyle toasts by setting these custom properties on :root.
  const STYLE =
    ":where(:root){--courier-toast-bg:#fff;--courier-toast-fg:#1b1f24;--courier-toast-muted:#57606a;" +
    "--courier-toast-border:#d0d7de;--courier-toast-accent:#0969da;--courier-toast-shadow:0 6px 24px #0003;" +
    "--courier-toast-radius:10px;--courier-toast-font:14px/1.4 system-ui,sans-serif}" +
    "@media (prefers-color-scheme:dark){:where(:root){--courier-toast-bg:#1f2430;--courier-toast-fg:#e6edf3;" +
    "--courier-toast-muted:#9da7b3;--courier-toast-border:#3a4150;--courier-toast-accent:#58a6ff}}" +
    ".courier-toasts{position:fixed;z-index:2147483000;top:16px;right:16px;display:flex;flex-direction:column;" +
    "gap:10px;width:min(360px,calc(100vw - 32px));pointer-events:none}" +
    ".courier-toast{pointer-events:auto;display:flex;gap:10px;padding:12px 14px;background:var(--courier-toast-bg);" +
    "color:var(--courier-toast-fg);border:1px solid var(--courier-toast-border);border-left:4px solid var(--courier-toast-accent);" +
    "border-radius:var(--courier-toast-radius);box-shadow:var(--courier-toast-shadow);font:var(--courier-toast-font);" +
    "animation:courier-in .2s ease-out}" +
    ".courier-toast-body{flex:1;min-width:0;overflow-wrap:anywhere}.courier-toast p{margin:0}" +
    ".courier-toast-title{font-weight:600}.courier-toast-message{color:var(--courier-toast-muted)}" +
    ".courier-toast-close{border:0;background:none;color:inherit;font-size:18px;line-height:1;padding:2px 6px;cursor:pointer}" +
    ".courier-toast-close:focus-visible{outline:2px solid var(--courier-toast-accent)}" +
    "@keyframes courier-in{from{opacity:0;transform:translateY(-6px)}}" +
    "@media (prefers-reduced-motion:reduce){.courier-toast{animation:none}}" +
    "@media " + MOBILE + "{.courier-toasts{top:auto;bottom:12px;left:12px;right:12px;width:auto}}";

  /** The `exp` claim of a JWT, in Unix seconds, or null. */
  function tokenExpiry(token) {
    try {
      const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      const exp = JSON.parse(root.atob(part + "===".slice((part.length + 3) % 4))).exp;
      return typeof exp === "number" ? exp : null;
    } catch (e) {
      return null;
    }
  }

  /** A text/event-stream parser: feed it decoded text, it calls `onEvent(type, data, id)`. */
  function sseParser(onEvent) {
    let buffer = "";
    let type = "message";
    let data = [];
    let id = null;
    return (text) => {
      const lines = (buffer + text).split(/\r\n|\r|\n/);
      buffer = lines.pop(); // an unfinished line waits for the next chunk
      for (const line of lines) {
        if (line === "") {
          if (data.length || type !== "message") onEvent(type, data.join("\n"), id);
          type = "message";
          data = [];
          id = null;
        } else if (line[0] !== ":") { // ":" starts a comment (keepalive)
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (field === "event") type = value;
          else if (field === "data") data.push(value);
          else if (field === "id" && value.indexOf("\0") < 0) id = value;
        }
      }
    };
  }

  const emit = (name, detail, cancelable) => {
    const event = new CustomEvent(name, { detail, cancelable, bubbles: true });
    doc.dispatchEvent(event);
    return event;
  };

  /** Creates a client; see notifications.d.ts for the options. */
  function notifications(options) {
    options = options || {};
    const url = String(options.url || defaultUrl()).replace(/\/+$/, "");
    const tokenProvider = options.tokenProvider || null;
    const credentials = options.credentials || "same-origin";
    const modes = JSON.parse(JSON.stringify(MODES));
    let token = options.token || null;
    let status = "disconnected";
    let viewer = null;
    let persist = false;
    let maxVisible = null;
    let lastSeen = null;
    let lastEventId = null;
    const seen = new Set();
    let visible = []; // toasts on screen, oldest first
    let waiting = []; // over the limit, shown first in first out
    let flushed = null; // queued ids re-sent since the current connection opened
    let attempt = 0;
    let generation = 0;
    let abort = null;
    let timer = null;
    let hiddenAt = null;
    let closed = false;
    let box = null;

    // ---------- connection ----------

    function setStatus(next, reason, httpStatus) {
      if (next === status) return;
      const previous = status;
      status = next;
      emit("courier:notification-status", { status: next, previous, reason, httpStatus });
    }

    function freshToken(force) {
      const exp = token && tokenExpiry(token);
      const stale = !token || force || (exp != null && exp - Date.now() / 1000 < TOKEN_MARGIN_S);
      if (!tokenProvider || !stale) return Promise.resolve(token);
      return Promise.resolve(tokenProvider()).then((t) => (token = t || null));
    }

    function headers(withToken, stream) {
      const h = {};
      if (stream) h.Accept = "text/event-stream";
      if (withToken) h.Authorization = "Bearer " + withToken;
      if (stream && lastEventId != null) h["Last-Event-ID"] = lastEventId;
      return h;
    }

    function connect() {
      if (closed || abort) return client;
      clearTimeout(timer);
      timer = null;
      const mine = ++generation;
      const current = () => mine === generation && !closed;
      const controller = new AbortController();
      abort = controller;
      if (status !== "reconnecting") setStatus("connecting");
      freshToken(false)
        .then((t) => {
          if (!current()) return null;
          const since = lastSeen == null ? "" : "?since=" + encodeURIComponent(lastSeen);
          return fetch(url + "/notifications/stream" + since, {
            headers: headers(t, true),
            credentials,
            cache: "no-store",
            signal: controller.signal,
          });
        })
        .then((res) => {
          if (!res || !current()) return;
          if (res.status === 401 || res.status === 403) {
            if (!tokenProvider) return fail("unauthorized", res.status);
            token = null; // the provider is asked again
            throw new Error("the stream refused the token (" + res.status + ")");
          }
          if (!res.ok || !res.body) throw new Error("the stream answered " + res.status);
          flushed = new Set();
          setStatus("connected");
          return read(res.body.getReader(), current);
        })
        .then(
          () => current() && retry(),
          (e) => current() && e.name !== "AbortError" && retry(e)
        );
      return client;
    }

    function read(reader, current) {
      const decoder = new TextDecoder();
      const push = sseParser((type, data, id) => current() && frame(type, data, id));
      const pump = () =>
        reader.read().then((chunk) => {
          if (chunk.done || !current()) return;
          push(decoder.decode(chunk.value, { stream: true }));
          return pump();
        });
      return pump();
    }

    function frame(type, data, id) {
      if (id != null) lastEventId = id;
      let body;
      try {
        body = data ? JSON.parse(data) : null;
      } catch (e) {
        return; // not a frame of ours
      }
      if (type === "notification" && body) {
        if (flushed && body.mode === "queued") flushed.add(body.id);
        receive(body, false);
      } else if (type === "sync") {
        attempt = 0;
        viewer = body;
        reconcile();
        emit("courier:notification-sync", { viewer: body });
      } else if (type === "reset") {
        emit("courier:notification-reset", body);
      } else if (type === "reconnect" || type === "shutdown") {
        retry(new Error("the server asked: " + type), type === "reconnect");
      }
    }

    /** After a (re)connect's flush: a queued toast the server did not re-send was dismissed elsewhere. */
    function reconcile() {
      const resent = flushed;
      flushed = null;
      if (!resent) return;
      for (const t of visible.concat(waiting)) {
        if (t.envelope.mode === "queued" && !t.local && !resent.has(t.id)) remove(t.id);
      }
    }

    function stop() {
      generation++;
      clearTimeout(timer);
      timer = null;
      if (abort) abort.abort();
      abort = null;
    }

    function retry(error, soon) {
      if (closed || status === "suspended") return;
      stop();
      // Capped exponential backoff with jitter, so a restarted server is not met
      // by every browser at the same instant.
      const cap = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * Math.pow(2, attempt++));
      const delay = soon ? Math.random() * BACKOFF_MIN_MS : cap / 2 + (Math.random() * cap) / 2;
      setStatus("reconnecting", error && String(error.message || error));
      timer = setTimeout(connect, delay);
    }

    function fail(reason, httpStatus) {
      stop();
      setStatus("disconnected", reason, httpStatus);
    }

    function away() {
      if (closed) return;
      if (persist) {
        if (doc.hidden && hiddenAt == null) hiddenAt = Date.now();
      } else if (status !== "suspended") {
        stop();
        setStatus("suspended");
      }
    }

    function back() {
      if (closed || doc.hidden) return;
      const hiddenFor = hiddenAt == null ? 0 : Date.now() - hiddenAt;
      hiddenAt = null;
      if (status === "suspended") {
        setStatus("disconnected");
        connect();
      } else if (persist && hiddenFor > HIDDEN_RECONNECT_MS) {
        // A long-hidden tab's connection may be dead without anyone noticing.
        stop();
        connect();
      }
    }

    function request(path) {
      return freshToken(false)
        .then((t) => fetch(url + path, { method: "DELETE", headers: headers(t, false), credentials }))
        .then((res) =>
          res.json().catch(() => null).then((body) => {
            if (!res.ok && res.status !== 404) {
              const error = new Error((body && body.error) || "dismiss answered " + res.status);
              error.status = res.status;
              throw error;
            }
            return { ok: res.ok, status: res.status, body };
          })
        );
    }

    // ---------- toasts ----------

    function receive(envelope, local) {
      if (!envelope || typeof envelope !== "object" || envelope.id == null || seen.has(envelope.id)) return;
      seen.add(envelope.id);
      if (seen.size > SEEN_LIMIT) seen.delete(seen.values().next().value);
      const stored = envelope.mode === "queued" || envelope.mode === "timeseries";
      if (stored && envelope.type !== "dismissed" && typeof envelope.created_at === "number") {
        if (lastSeen == null || envelope.created_at > lastSeen) lastSeen = envelope.created_at;
      }
      const event = emit("courier:notification", envelope, true);
      if (envelope.type === "dismissed") {
        const gone = envelope.payload && envelope.payload.notification_id;
        if (gone) remove(gone);
      } else if (envelope.type === "generic" && !event.defaultPrevented) {
        toast(envelope, local);
      }
    }

    function toast(envelope, local) {
      if (envelope.group != null) {
        // A group's newer notification takes the older one's place.
        const same = visible.concat(waiting).find((t) => t.envelope.group === envelope.group);
        if (same) return replace(same, envelope);
      }
      waiting.push({ id: envelope.id, envelope, el: element(envelope), timer: null, local });
      layout();
    }

    function replace(t, envelope) {
      const el = element(envelope);
      if (t.el.parentNode) t.el.parentNode.replaceChild(el, t.el);
      t.id = envelope.id;
      t.envelope = envelope;
      t.el = el;
      clearTimeout(t.timer);
      t.timer = null;
      if (visible.indexOf(t) >= 0) arm(t); // its clock starts again
    }

    function paragraph(className, text) {
      const p = doc.createElement("p");
      p.className = className;
      p.textContent = String(text); // text only, never markup: the content is not trusted
      return p;
    }

    function element(envelope) {
      const payload = envelope.payload || {};
      const el = doc.createElement("div");
      el.className = "courier-toast";
      el.setAttribute("role", "status");
      el.dataset.id = envelope.id;
      el.dataset.mode = envelope.mode;
      const body = doc.createElement("div");
      body.className = "courier-toast-body";
      if (payload.title != null) body.appendChild(paragraph("courier-toast-title", payload.title));
      if (payload.message != null) body.appendChild(paragraph("courier-toast-message", payload.message));
      el.appendChild(body);
      if ((modes[envelope.mode] || {}).dismiss) {
        const close = doc.createElement("button");
        close.type = "button";
        close.className = "courier-toast-close";
        close.setAttribute("aria-label", "Dismiss notification" + (payload.title ? ": " + payload.title : ""));
        close.textContent = "\u00d7";
        close.addEventListener("click", () => {
          const id = el.dataset.id;
          if ((modes[envelope.mode] || {}).dismiss !== "server") return void remove(id);
          client.dismiss(id).catch((error) => emit("courier:notification-error", { id, action: "dismiss", error }));
        });
        el.appendChild(close);
      }
      return el;
    }

    function remove(id) {
      for (const list of [visible, waiting]) {
        const i = list.findIndex((t) => t.id === id);
        if (i < 0) continue;
        const t = list.splice(i, 1)[0];
        clearTimeout(t.timer);
        t.el.remove();
        layout();
        return true;
      }
      return false;
    }

    /** Shows waiting toasts while there is room; a toast's clock starts when it is shown. */
    function layout() {
      const limit = maxVisible != null ? maxVisible : root.matchMedia && root.matchMedia(MOBILE).matches ? 2 : 3;
      while (visible.length > limit) {
        const t = visible.pop(); // the newest visible ones wait again, in order
        clearTimeout(t.timer);
        t.timer = null;
        t.el.remove();
        waiting.unshift(t);
      }
      while (visible.length < limit && waiting.length) {
        const t = waiting.shift();
        visible.push(t);
        container().appendChild(t.el);
        arm(t);
      }
    }

    function arm(t) {
      const ms = (modes[t.envelope.mode] || {}).autoClear;
      if (typeof ms === "number" && ms > 0) t.timer = setTimeout(() => remove(t.id), ms);
    }

    function container() {
      if (box && box.isConnected) return box;
      if (!doc.getElementById("courier-notifications-style")) {
        const style = doc.createElement("style");
        style.id = "courier-notifications-style";
        style.textContent = STYLE;
        doc.head.appendChild(style);
      }
      box = doc.createElement("section");
      box.className = "courier-toasts";
      box.setAttribute("aria-live", "polite");
      box.setAttribute("aria-label", "Notifications");
      doc.body.appendChild(box);
      return box;
    }

    // ---------- the public face ----------

    const listeners = [
      [root, "blur", away],
      [root, "focus", back],
      [doc, "visibilitychange", () => (doc.hidden ? away() : back())],
    ];

    const client = {
      get status() {
        return status;
      },
      get viewer() {
        return viewer;
      },
      get lastSeen() {
        return lastSeen;
      },
      set lastSeen(value) {
        const n = value == null ? null : Number(value);
        lastSeen = n == null || !isFinite(n) ? null : n;
        lastEventId = null; // an explicit cursor replaces the stream's own position
      },
      configure(settings) {
        settings = settings || {};
        for (const mode in MODES) if (settings[mode]) Object.assign(modes[mode], settings[mode]);
        if ("persistConnection" in settings) persist = !!settings.persistConnection;
        if ("maxVisible" in settings) maxVisible = settings.maxVisible == null ? null : Math.max(1, settings.maxVisible | 0);
        if (visible.length || waiting.length) layout();
        return client;
      },
      connect,
      dismiss(id) {
        remove(id);
        return request("/notifications/" + encodeURIComponent(id));
      },
      dismissGroup(group) {
        for (const t of visible.concat(waiting)) if (t.envelope.group === group) remove(t.id);
        return request("/notifications/group/" + encodeURIComponent(group));
      },
      show(envelope) {
        receive(envelope, true);
      },
      close() {
        closed = true;
        stop();
        for (const [target, name, fn] of listeners) target.removeEventListener(name, fn);
        for (const t of visible.concat(waiting)) clearTimeout(t.timer);
        visible = [];
        waiting = [];
        if (box) box.remove();
        box = null;
        setStatus("disconnected");
      },
    };

    client.configure(options);
    for (const [target, name, fn] of listeners) target.addEventListener(name, fn);
    if (options.connect !== false) connect();
    return client;
  }

  const script = doc.currentScript;
  function defaultUrl() {
    return script && script.src ? new URL(script.src, root.location.href).origin : root.location.origin;
  }

  root.Courier = root.Courier || {};
  root.Courier.notifications = notifications;

  // <script src=".../notifications.js" data-courier-auto data-token="…" data-url="…">
  if (script && script.hasAttribute("data-courier-auto")) {
    const start = () => {
      root.courierNotifications = notifications({
        url: script.getAttribute("data-url") || undefined,
        token: script.getAttribute("data-token") || undefined,
      });
    };
    if (doc.body) start();
    else doc.addEventListener("DOMContentLoaded", start);
  }
})(window);
