(function () {
  // Ponte: this page is a device UI served under a session prefix. URLs the page builds
  // at run time ("/x", "http://<device>/x") are mapped under the prefix here; static
  // ones were rewritten by the gateway already. Navigations this cannot catch
  // (location.replace("/x")) come back through the gateway's Referer fallback.
  // The same script starts workers and service workers (the gateway prepends it to
  // their scripts): there is no DOM there, only the global `self`.
  var window = globalThis;
  if (window.__ponte) return;
  var P = "__PONTE_PREFIX__", D = __PONTE_DEVICE__, C = "__PONTE_COOKIE__", L = window.location;
  var BARE = P.slice(0, -1);
  function isDevice(a) {
    a = String(a).toLowerCase().replace(/^[^@]*@/, "");
    for (var i = 0; i < D.length; i++) if (D[i] === a) return true;
    return false;
  }
  function prefixed(path) {
    return path.indexOf(P) === 0 || path === BARE || /^[?#]/.test(path.slice(BARE.length)) && path.indexOf(BARE) === 0;
  }
  function under(tail) { return P + tail.replace(/^\//, ""); }
  // Returns the URL to use, as a string, or the input unchanged. A Trusted Types URL
  // (webpack's chunk loader sets `script.src` to one) is read as its text: the gateway
  // drops the device's CSP, so a plain string is accepted where it goes.
  var TSU = window.TrustedScriptURL;
  function fix(u, ws) {
    if (u == null) return u;
    var s = typeof u === "string" ? u : (u instanceof URL ? u.href : (TSU && u instanceof TSU ? String(u) : null));
    if (s === null) return u;
    s = s.trim();
    var m;
    if (s.slice(0, 2) === "//") {
      m = /^\/\/([^\/?#\\]*)(.*)$/.exec(s);
      if (m && isDevice(m[1])) return abs(under(m[2]), ws);
      return u;
    }
    if (s.charAt(0) === "/") return prefixed(s) ? u : abs(under(s), ws);
    m = /^(https?|wss?):\/\/([^\/?#\\]*)(.*)$/i.exec(s);
    if (!m) return u;
    if (isDevice(m[2])) return abs(under(m[3]), ws);
    // Built from location (location.origin + "/x", "ws://" + location.host + "/x").
    if (m[2].toLowerCase() === L.host.toLowerCase()) {
      var path = m[3] === "" ? "/" : m[3];
      if (prefixed(path)) return u;
      if (ws || /^wss?$/i.test(m[1])) return abs(under(path), true);
      return m[1] + "://" + m[2] + under(path);
    }
    return u;
  }
  function abs(path, ws) {
    return ws ? (L.protocol === "https:" ? "wss://" : "ws://") + L.host + path : path;
  }

  var F = window.fetch;
  if (F) {
    window.fetch = function (input, init) {
      if (typeof Request !== "undefined" && input instanceof Request) {
        var v = fix(input.url);
        if (v !== input.url) input = new Request(v, input);
      } else {
        input = fix(input);
      }
      return F.call(this, input, init);
    };
  }
  var X = window.XMLHttpRequest && XMLHttpRequest.prototype.open;
  if (X) XMLHttpRequest.prototype.open = function (method, url) {
    var a = Array.prototype.slice.call(arguments);
    a[1] = fix(url);
    return X.apply(this, a);
  };
  function fixArgs(f, n) {
    return function () {
      var a = Array.prototype.slice.call(arguments);
      for (var i = 0; i < Math.min(n, a.length); i++) a[i] = fix(a[i]);
      return f.apply(this, a);
    };
  }
  // Workers: their own imports; service workers: what they cache and the windows they open.
  if (typeof window.importScripts === "function") window.importScripts = fixArgs(window.importScripts, 1e9);
  var CP = window.Cache && Cache.prototype;
  if (CP) {
    if (CP.add) CP.add = fixArgs(CP.add, 1);
    if (CP.addAll) {
      var AA = CP.addAll;
      CP.addAll = function (list) {
        return AA.call(this, Array.prototype.map.call(list, function (u) {
          return typeof Request !== "undefined" && u instanceof Request && fix(u.url) !== u.url ? new Request(fix(u.url), u) : fix(u);
        }));
      };
    }
  }
  var CL = window.Clients && Clients.prototype;
  if (CL && CL.openWindow) CL.openWindow = fixArgs(CL.openWindow, 1);
  function wrapCtor(name, ws) {
    var C = window[name];
    if (!C) return;
    var W = function (url, opt) {
      return arguments.length > 1 ? new C(fix(url, ws), opt) : new C(fix(url, ws));
    };
    W.prototype = C.prototype;
    for (var k in C) try { W[k] = C[k]; } catch (e) {}
    ["CONNECTING", "OPEN", "CLOSING", "CLOSED"].forEach(function (k) { if (k in C) W[k] = C[k]; });
    window[name] = W;
  }
  wrapCtor("WebSocket", true);
  wrapCtor("EventSource", false);
  wrapCtor("Worker", false);
  wrapCtor("SharedWorker", false);
  // Service workers: the script is fetched under the prefix, and the scope is kept
  // there (the browser's default, the script's directory, already is). The gateway
  // enforces the same on the script's response; this keeps well-behaved pages working.
  var SWC = window.ServiceWorkerContainer && ServiceWorkerContainer.prototype;
  if (SWC && SWC.register) {
    var R = SWC.register, G = SWC.getRegistration;
    SWC.register = function (url, opt) {
      var o = {};
      if (opt) for (var k in opt) o[k] = opt[k];
      if (o.scope != null) {
        var s = fix(String(o.scope));
        // A scope outside the prefix ("/", another session's) becomes the prefix.
        var path = new URL(s, L.href);
        o.scope = path.host === L.host && prefixed(path.pathname) ? s : P;
      }
      return R.call(this, fix(url), o);
    };
    if (G) SWC.getRegistration = function (url) {
      return arguments.length ? G.call(this, fix(url)) : G.call(this);
    };
  }
  if (typeof Document === "undefined") {
    window.__ponte = { prefix: P, fix: fix };
    return;
  }
  ["pushState", "replaceState"].forEach(function (k) {
    var H = history[k];
    history[k] = function (state, title, url) {
      return arguments.length > 2 ? H.call(this, state, title, fix(url)) : H.call(this, state, title);
    };
  });
  var O = window.open;
  window.open = function (url) {
    var a = Array.prototype.slice.call(arguments);
    a[0] = fix(url);
    return O.apply(this, a);
  };
  // URL properties set from script: img.src = "/x", a.href = "/x", form.action = "/x".
  [["HTMLImageElement", "src"], ["HTMLScriptElement", "src"], ["HTMLIFrameElement", "src"],
   ["HTMLSourceElement", "src"], ["HTMLMediaElement", "src"], ["HTMLLinkElement", "href"],
   ["HTMLAnchorElement", "href"], ["HTMLFormElement", "action"]].forEach(function (p) {
    var C = window[p[0]], d = C && Object.getOwnPropertyDescriptor(C.prototype, p[1]);
    if (!d || !d.set) return;
    Object.defineProperty(C.prototype, p[1], {
      configurable: true, enumerable: d.enumerable, get: d.get,
      set: function (v) { d.set.call(this, fix(v)); }
    });
  });
  // `srcset` / `imagesrcset` set from script: each candidate's URL.
  function fixSrcset(v) {
    v = String(v);
    if (/^\s*data:/i.test(v)) return v;
    return v.split(",").map(function (c) {
      var m = /^(\s*)(\S+)([\s\S]*)$/.exec(c);
      return m ? m[1] + fix(m[2]) + m[3] : c;
    }).join(",");
  }
  [["HTMLImageElement", "srcset"], ["HTMLSourceElement", "srcset"], ["HTMLLinkElement", "imageSrcset"]].forEach(function (p) {
    var C = window[p[0]], d = C && Object.getOwnPropertyDescriptor(C.prototype, p[1]);
    if (!d || !d.set) return;
    Object.defineProperty(C.prototype, p[1], {
      configurable: true, enumerable: d.enumerable, get: d.get,
      set: function (v) { d.set.call(this, fixSrcset(v)); }
    });
  });
  var SA = Element.prototype.setAttribute, GA = Element.prototype.getAttribute;
  var URL_ATTRS = { src: 1, href: 1, action: 1, formaction: 1, poster: 1 };
  Element.prototype.setAttribute = function (name, value) {
    var n = String(name).toLowerCase();
    if (URL_ATTRS[n] === 1) value = fix(String(value));
    else if (n === "srcset" || n === "imagesrcset") value = fixSrcset(value);
    return SA.call(this, name, value);
  };
  // A script reading back a URL attribute sees what the device wrote ("/x", not the
  // prefixed "/remote/s/…/x" the gateway or this script put there); writing it back
  // maps it again.
  Element.prototype.getAttribute = function (name) {
    var v = GA.call(this, name);
    if (typeof v === "string" && URL_ATTRS[String(name).toLowerCase()] === 1 && P !== "/") {
      if (v.indexOf(P) === 0) return "/" + v.slice(P.length);
      if (v === BARE) return "/";
    }
    return v;
  };
  // HTML inserted from script (innerHTML, outerHTML, insertAdjacentHTML): its URL
  // attributes are mapped before the browser sees them, in an inert <template> (nothing
  // there loads), so an `<img src="/x">` is fetched under the prefix at once rather than
  // rescued by the Referer fallback. Strings without such a URL pass untouched.
  var HTML_URL = /(?:src|href|action|formaction|poster|srcset)\s*=\s*["']?\s*(?:\/|https?:)/i;
  var IH = Object.getOwnPropertyDescriptor(Element.prototype, "innerHTML");
  function fixHtml(html) {
    if (typeof html !== "string" || !IH || !HTML_URL.test(html)) return html;
    var t = document.createElement("template");
    IH.set.call(t, html);
    var els = t.content.querySelectorAll("[src],[href],[action],[formaction],[poster],[srcset],[imagesrcset]");
    for (var i = 0; i < els.length; i++) {
      for (var n in URL_ATTRS) {
        var v = GA.call(els[i], n);
        if (v !== null) SA.call(els[i], n, fix(v));
      }
      ["srcset", "imagesrcset"].forEach(function (n) {
        var v = GA.call(els[i], n);
        if (v !== null) SA.call(els[i], n, fixSrcset(v));
      });
    }
    return IH.get.call(t);
  }
  [["innerHTML", Element.prototype], ["outerHTML", Element.prototype]].forEach(function (p) {
    var d = Object.getOwnPropertyDescriptor(p[1], p[0]);
    if (!d || !d.set) return;
    Object.defineProperty(p[1], p[0], {
      configurable: true, enumerable: d.enumerable, get: d.get,
      set: function (v) { d.set.call(this, fixHtml(v)); }
    });
  });
  var IA = Element.prototype.insertAdjacentHTML;
  if (IA) Element.prototype.insertAdjacentHTML = function (where, html) {
    return IA.call(this, where, fixHtml(html));
  };
  // The device sets its session cookie from script with path=/: scope it to the prefix,
  // so it reaches this session's requests and no other session's. (Without a path the
  // browser's default, the page's directory, is already under the prefix.)
  var CD = Object.getOwnPropertyDescriptor(Document.prototype, "cookie");
  if (CD && CD.set) {
    Object.defineProperty(Document.prototype, "cookie", {
      configurable: true, enumerable: CD.enumerable,
      // Device cookies carry a name prefix in the browser (the gateway forwards only
      // those); the page sees and sets them under their own names.
      get: function () {
        return String(CD.get.call(this)).split(/;\s*/).filter(function (c) {
          return c.indexOf(C) === 0;
        }).map(function (c) { return c.slice(C.length); }).join("; ");
      },
      set: function (v) {
        var parts = String(v).split(";");
        // Ponte's own names are not the device's to set (the gateway drops them too).
        if (/^\s*(__host-|__secure-)?(ponte_|__ponte)/i.test(parts[0])) return;
        parts[0] = C + parts[0].replace(/^\s+/, "");
        for (var i = 1; i < parts.length; i++) {
          var m = /^\s*path\s*=\s*(.*)$/i.exec(parts[i]);
          if (!m) continue;
          var p = m[1].trim();
          parts[i] = " path=" + (p.charAt(0) === "/" && !prefixed(p) ? under(p) : (p.charAt(0) === "/" ? p : P));
        }
        parts = parts.filter(function (s) { return !/^\s*domain\s*=/i.test(s); });
        CD.set.call(this, parts.join(";"));
      }
    });
  }
  window.__ponte = { prefix: P, fix: fix };
})();
