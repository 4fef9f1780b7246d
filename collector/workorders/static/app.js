// The grid worker's page: plain JS, no framework, no build step (see docs/decisions.md).
// A step is first put in localStorage with its idempotency key, then sent; one taken with
// the network cut stays there and is sent when the network returns; the server drops a
// key it has seen, so a step resent after a lost answer is taken once.
"use strict";
(function () {
  var T = {
    zh: {title: "空气质量工单", empty: "本网格暂无待处理工单", back: "‹ 返回列表",
      chart: "近24小时 PM2.5", steps: "处置", ack: "收到", arrive: "到场", report: "上报",
      handle: "处置完成", cause: "原因", note: "说明", history: "记录", neighbours: "附近设备",
      lang: "EN", nolink: "请用短信中的登录链接打开本页。",
      expired: "登录链接已过期，请联系镇街管理员重新发送。",
      revoked: "登录链接已被撤销，请联系镇街管理员。", unknown: "登录链接无效，请使用短信中的链接。",
      offline: "网络未连接：{n} 项操作已保存在手机上，联网后自动发送。",
      pending: "{n} 项操作待发送…", outside: "该工单不在您的网格内。", gone: "工单不存在或已关闭。",
      grid_worker: "网格员", township_officer: "镇街", county_officer: "县",
      new: "待收到", acknowledged: "已收到", arrived: "已到场", reported: "已上报",
      handled: "已处置", opened: "开启", alert: "预警", complaint: "投诉",
      device: "设备", place: "位置", value: "PM2.5", since: "开始", status: "状态",
      nodata: "暂无数据", by: "", via: "经", evidence: "投诉时附近读数",
      construction_dust: "施工扬尘", burning: "焚烧", industrial: "工业排放", traffic: "交通",
      sensor_fault: "传感器故障", other: "其他", sms: "短信", app: "手机", mqtt: "APP", http: "接口",
      photo: "照片（可选）", show_photo: "查看照片"},
    en: {title: "Air quality work orders", empty: "No open work orders in your grid",
      back: "‹ Back to list", chart: "PM2.5, last 24 h", steps: "Steps", ack: "Received",
      arrive: "On site", report: "Escalate", handle: "Handled", cause: "Cause", note: "Note",
      history: "History", neighbours: "Nearby devices", lang: "中文",
      nolink: "Open this page with the sign-in link from your SMS.",
      expired: "This sign-in link has expired; ask your township for a new one.",
      revoked: "This sign-in link was revoked; ask your township.",
      unknown: "This sign-in link is not valid; use the one from your SMS.",
      offline: "Offline: {n} step(s) kept on this phone, sent when the network returns.",
      pending: "{n} step(s) waiting to be sent…", outside: "This work order is outside your grid.",
      gone: "No such open work order.", grid_worker: "grid worker", township_officer: "township",
      county_officer: "county", new: "new", acknowledged: "received", arrived: "on site",
      reported: "escalated", handled: "handled", opened: "opened", alert: "Alert",
      complaint: "Complaint", device: "Device", place: "Place", value: "PM2.5",
      since: "Since", status: "Status", nodata: "no data", by: "by ", via: "via",
      evidence: "Readings nearby at the complaint's time",
      construction_dust: "construction dust", burning: "burning", industrial: "industrial",
      traffic: "traffic", sensor_fault: "sensor fault", other: "other", sms: "SMS",
      app: "phone", mqtt: "app", http: "API", photo: "Photo (optional)", show_photo: "show photo"}
  };
  var LS_TOKEN = "airgrid.token", LS_LANG = "airgrid.lang", LS_QUEUE = "airgrid.outbox";
  var lang = localStorage.getItem(LS_LANG) || "zh";
  var me = null, current = null;
  function $(id) { return document.getElementById(id); }
  function t(k) { return (T[lang][k] !== undefined ? T[lang][k] : k); }
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) { e.textContent = text; }
    if (cls) { e.className = cls; }
    return e;
  }
  function time(ms) {
    var d = new Date(ms);
    function p(n) { return (n < 10 ? "0" : "") + n; }
    return (d.getMonth() + 1) + "-" + p(d.getDate()) + " " + p(d.getHours()) + ":" + p(d.getMinutes());
  }
  function show(id) {
    ["signin", "list", "detail"].forEach(function (s) { $(s).hidden = (s !== id); });
  }
  function translate() {
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
    document.querySelectorAll("[data-t]").forEach(function (e) { e.textContent = t(e.getAttribute("data-t")); });
    $("lang").textContent = t("lang");
    document.title = t("title");
  }

  // -- sign-in: the link's token moves from the URL to this phone's storage
  var q = new URLSearchParams(location.search.slice(1) || location.hash.slice(1));
  if (q.get("t")) {
    localStorage.setItem(LS_TOKEN, q.get("t"));
    history.replaceState(null, "", location.pathname);
  }
  function token() { return localStorage.getItem(LS_TOKEN) || ""; }
  function signedOut(reason) {
    show("signin");
    $("signin-msg").textContent = t(reason);
  }
  function api(path, opts) {
    opts = opts || {};
    opts.headers = {"Authorization": "Bearer " + token(), "Content-Type": "application/json"};
    return fetch(path, opts).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (body) {
        if (r.status === 401) { signedOut(body.reason || "unknown"); }
        return {status: r.status, body: body};
      });
    });
  }

  // -- the outbox of steps
  function queue() { try { return JSON.parse(localStorage.getItem(LS_QUEUE) || "[]"); } catch (e) { return []; } }
  function saveQueue(items) { localStorage.setItem(LS_QUEUE, JSON.stringify(items)); banner(); }
  function banner() {
    var n = queue().length, b = $("banner");
    b.hidden = n === 0;
    b.textContent = (navigator.onLine ? t("pending") : t("offline")).replace("{n}", n);
  }
  var flushing = false;
  function flush() {
    if (flushing) { return Promise.resolve(); }
    var items = queue();
    if (!items.length) { banner(); return Promise.resolve(); }
    flushing = true;
    var item = items[0];
    return upload(item).then(function () {
      return api("/api/app/orders/" + item.order + "/steps", {method: "POST", body: JSON.stringify(item.body)});
    }).then(function (r) {
        // taken (201), taken before (200) or refused for good (4xx): it leaves the phone
        if (r.status < 500 && r.status !== 401 && r.status !== 408 && r.status !== 429) {
          saveQueue(queue().filter(function (x) { return x.body.key !== item.body.key; }));
          if (current && current.id === item.order && r.status < 300) { render(r.body); }
        }
        flushing = false;
        if (r.status < 300 && queue().length) { return flush(); }
      }, function () { flushing = false; banner(); });
  }
  function upload(item) {
    // a photo goes first; its digest then names it in the step (resending it is harmless:
    // the server stores a photo once, by its SHA-256)
    if (!item.photo) { return Promise.resolve(); }
    var bin = atob(item.photo), bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) { bytes[i] = bin.charCodeAt(i); }
    return fetch("/api/app/orders/" + item.order + "/photos", {method: "POST", body: bytes,
      headers: {"Authorization": "Bearer " + token(), "Content-Type": "image/jpeg"}})
      .then(function (r) { return r.json().then(function (b) { return {status: r.status, body: b}; }); })
      .then(function (r) {
        if (r.status >= 500 || r.status === 401 || r.status === 408 || r.status === 429) {
          throw new Error("photo " + r.status);  // kept, tried again
        }
        if (r.status < 300) { item.body.photo = r.body.photo; }  // else: the step without it
        delete item.photo;
        saveQueue(queue().map(function (x) { return x.body.key === item.body.key ? item : x; }));
      });
  }
  function shrink(file) {
    // a phone photo scaled to 1280 px on its long side, JPEG 0.7: about 150 kB
    return new Promise(function (done) {
      if (!file) { return done(null); }
      var img = new Image(), url = URL.createObjectURL(file);
      img.onload = function () {
        var k = Math.min(1, 1280 / Math.max(img.width, img.height));
        var c = document.createElement("canvas");
        c.width = Math.round(img.width * k); c.height = Math.round(img.height * k);
        c.getContext("2d").drawImage(img, 0, 0, c.width, c.height);
        URL.revokeObjectURL(url);
        done(c.toDataURL("image/jpeg", 0.7).split(",")[1]);
      };
      img.onerror = function () { URL.revokeObjectURL(url); done(null); };
      img.src = url;
    });
  }
  function newKey() {
    var a = new Uint8Array(12);
    crypto.getRandomValues(a);
    return Array.prototype.map.call(a, function (b) { return (b + 256).toString(16).slice(1); }).join("");
  }
  function take(step, extra, photo) {
    var body = {step: step, key: step + "-" + newKey()};
    Object.keys(extra || {}).forEach(function (k) { body[k] = extra[k]; });
    var items = queue();
    items.push(photo ? {order: current.id, body: body, photo: photo} : {order: current.id, body: body});
    saveQueue(items);
    return flush();
  }
  function where() {
    // the phone's place when allowed; never waits more than 3 s for it
    return new Promise(function (done) {
      if (!navigator.geolocation) { return done({}); }
      var t0 = setTimeout(function () { done({}); }, 3000);
      navigator.geolocation.getCurrentPosition(function (p) {
        clearTimeout(t0); done({lat: p.coords.latitude, lon: p.coords.longitude});
      }, function () { clearTimeout(t0); done({}); }, {timeout: 2500, maximumAge: 60000});
    });
  }

  // -- the list and its map (Tianditu's CGCS2000 lon/lat tiles: WGS-84 coordinates as they
  // are, no GCJ-02 offset; without a key or a network the pins are drawn on a plain ground)
  function drawMap(orders) {
    var box = $("map"), W = box.clientWidth || 360, H = box.clientHeight || 200;
    var pts = orders.filter(function (o) { return o.lat !== null; });
    var tiles = $("tiles"), pins = $("pins");
    tiles.textContent = ""; pins.textContent = "";
    if (!pts.length) { return; }
    var lats = pts.map(function (o) { return o.lat; }), lons = pts.map(function (o) { return o.lon; });
    var cLat = (Math.max.apply(null, lats) + Math.min.apply(null, lats)) / 2;
    var cLon = (Math.max.apply(null, lons) + Math.min.apply(null, lons)) / 2;
    var span = Math.max(Math.max.apply(null, lats) - Math.min.apply(null, lats),
      Math.max.apply(null, lons) - Math.min.apply(null, lons), 0.01) * 1.6;
    // level z: a 256 px tile spans 360 / 2^z degrees
    var z = Math.max(1, Math.min(18, Math.floor(Math.log(360 * Math.min(W, H) / 256 / span) / Math.LN2)));
    var degPx = 360 / Math.pow(2, z) / 256;
    function x(lon) { return W / 2 + (lon - cLon) / degPx; }
    function y(lat) { return H / 2 - (lat - cLat) / degPx; }
    if (me && me.tianditu_key) {
      var left = cLon - W / 2 * degPx, top = cLat + H / 2 * degPx;
      var c0 = Math.floor((left + 180) / (degPx * 256)), r0 = Math.floor((90 - top) / (degPx * 256));
      for (var c = c0; c <= c0 + Math.ceil(W / 256) + 1; c++) {
        for (var r = r0; r <= r0 + Math.ceil(H / 256) + 1; r++) {
          var img = new Image();
          img.onerror = function () { this.remove(); };
          img.alt = "";
          img.src = "https://t" + ((c + r) % 8) + ".tianditu.gov.cn/vec_c/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0&LAYER=vec&STYLE=default&TILEMATRIXSET=c&FORMAT=tiles&TILEMATRIX=" + z + "&TILEROW=" + r + "&TILECOL=" + c + "&tk=" + me.tianditu_key;
          img.style.left = Math.round(x(c * degPx * 256 - 180)) + "px";
          img.style.top = Math.round(y(90 - r * degPx * 256)) + "px";
          tiles.appendChild(img);
        }
      }
    }
    var ns = "http://www.w3.org/2000/svg";
    pts.forEach(function (o) {
      var g = document.createElementNS(ns, "circle");
      g.setAttribute("cx", x(o.lon).toFixed(1)); g.setAttribute("cy", y(o.lat).toFixed(1));
      g.setAttribute("r", "9"); g.setAttribute("fill", o.status === "new" ? "#d1242f" : "#0969da");
      g.setAttribute("stroke", "#fff"); g.setAttribute("stroke-width", "2");
      g.setAttribute("data-order", o.id);
      g.addEventListener("click", function () { open(o.id); });
      var label = document.createElementNS(ns, "text");
      label.setAttribute("x", (x(o.lon) + 12).toFixed(1)); label.setAttribute("y", (y(o.lat) + 4).toFixed(1));
      label.setAttribute("font-size", "12"); label.textContent = "#" + o.id;
      pins.appendChild(g); pins.appendChild(label);
    });
  }
  function loadList(fetched) {
    return (fetched || api("/api/app/orders")).then(function (r) {
      if (r.status !== 200) { return; }
      show("list");
      current = null;
      $("who").textContent = me.name + " · " + t(me.role) + " · " + [me.township, me.grid].filter(Boolean).join(" / ");
      var ul = $("orders");
      ul.textContent = "";
      r.body.orders.forEach(function (o) {
        var li = el("li"), b = el("button");
        b.type = "button";
        b.setAttribute("data-order", o.id);
        b.appendChild(el("strong", "#" + o.id + " " + (o.place || o.device)));
        b.appendChild(el("span", t(o.status), "badge " + o.status));
        b.appendChild(el("div", t(o.source) + " · " + (o.source === "complaint" ? o.summary : "PM2.5 " + o.value) + " · " + time(o.started_ms), "muted"));
        b.addEventListener("click", function () { open(o.id); });
        li.appendChild(b);
        ul.appendChild(li);
      });
      $("empty").hidden = r.body.orders.length > 0;
      drawMap(r.body.orders);
    });
  }

  // -- one order
  function chart(data) {
    var box = $("chart"), W = 360, H = 140, ns = "http://www.w3.org/2000/svg";
    box.textContent = "";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    svg.setAttribute("id", "chart-svg");
    box.appendChild(svg);
    var pts = data.points || [];
    var top = Math.max(data.threshold * 1.2, Math.max.apply(null, pts.map(function (p) { return p[1]; }).concat([0])) * 1.1);
    function x(ms) { return 30 + (ms - data.from_ms) / (data.to_ms - data.from_ms) * (W - 40); }
    function y(v) { return H - 15 - v / top * (H - 25); }
    var lim = document.createElementNS(ns, "line");
    lim.setAttribute("x1", 30); lim.setAttribute("x2", W - 10);
    lim.setAttribute("y1", y(data.threshold)); lim.setAttribute("y2", y(data.threshold));
    lim.setAttribute("stroke", "#d1242f"); lim.setAttribute("stroke-dasharray", "4 3");
    svg.appendChild(lim);
    var lt = document.createElementNS(ns, "text");
    lt.setAttribute("x", 2); lt.setAttribute("y", y(data.threshold) + 4); lt.setAttribute("font-size", "10");
    lt.textContent = String(data.threshold);
    svg.appendChild(lt);
    if (!pts.length) {
      var n = document.createElementNS(ns, "text");
      n.setAttribute("x", W / 2 - 20); n.setAttribute("y", H / 2); n.textContent = t("nodata");
      svg.appendChild(n);
      return;
    }
    var line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", pts.map(function (p) { return x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1); }).join(" "));
    line.setAttribute("fill", "none"); line.setAttribute("stroke", "#0b6e4f"); line.setAttribute("stroke-width", "2");
    line.setAttribute("data-points", pts.length);
    svg.appendChild(line);
  }
  function render(o) {
    current = o;
    show("detail");
    $("d-title").textContent = "#" + o.id + " " + t(o.source) + " · " + (o.place || o.device);
    var dl = $("d-facts");
    dl.textContent = "";
    [["status", t(o.status)], ["device", o.device], ["place", [o.township, o.grid, o.place].filter(Boolean).join(" / ")],
     ["value", o.source === "complaint" ? o.summary : o.value + " µg/m³"], ["since", time(o.started_ms)]]
      .forEach(function (p) { dl.appendChild(el("dt", t(p[0]))); dl.appendChild(el("dd", p[1])); });
    dl.setAttribute("data-status", o.status);
    var done = o.status === "handled";
    $("s-ack").disabled = done || o.status !== "new";
    $("s-arrive").disabled = done || (o.history || []).some(function (h) { return h.step === "arrived"; });
    $("s-report").disabled = done;
    $("s-handle").disabled = done;
    var ol = $("history");
    ol.textContent = "";
    (o.history || []).forEach(function (h) {
      var who = h.by_name ? " · " + t("by") + h.by_name : "";
      var via = h.via ? " (" + t("via") + " " + t(h.via) + ")" : "";
      var li = el("li", time(h.at_ms) + " " + t(h.step) + who + via + (h.cause ? " · " + t(h.cause) : "") + (h.note ? " · " + h.note : ""));
      li.setAttribute("data-step", h.step);
      if (h.via) { li.setAttribute("data-via", h.via); }
      if (h.photo) {
        var b = el("button", t("show_photo"), "link");
        b.type = "button";
        b.addEventListener("click", function () {
          fetch("/api/app/photos/" + h.photo, {headers: {"Authorization": "Bearer " + token()}})
            .then(function (r) { return r.blob(); }).then(function (blob) {
              var img = el("img"); img.src = URL.createObjectURL(blob); img.className = "photo";
              img.setAttribute("data-photo", h.photo);
              li.appendChild(img);
            });
        });
        li.appendChild(b);
      }
      ol.appendChild(li);
    });
    var nb = $("neighbours");
    nb.textContent = "";
    (o.neighbours || []).forEach(function (n) { nb.appendChild(el("li", n.name + " (" + n.device + ") " + n.distance_m + " m")); });
    var ev = $("evidence");
    ev.textContent = "";
    if (o.evidence && o.evidence.devices) {
      ev.appendChild(el("h3", t("evidence")));
      o.evidence.devices.forEach(function (d) {
        ev.appendChild(el("div", d.name + " " + d.distance_m + " m: " + (d.pm2_5_mean !== undefined ? d.pm2_5_mean + " / max " + d.pm2_5_max + " µg/m³" : t("nodata")), "muted"));
      });
    }
  }
  function open(id) {
    return api("/api/app/orders/" + id).then(function (r) {
      if (r.status === 403) { alert(t("outside")); return; }
      if (r.status !== 200) { alert(t("gone")); return; }
      render(r.body);
      api("/api/app/orders/" + id + "/chart").then(function (c) { if (c.status === 200) { chart(c.body); } });
    });
  }

  // -- wiring
  function causes() {
    var s = $("cause");
    s.textContent = "";
    (me ? me.causes : []).forEach(function (c) { var o = el("option", t(c)); o.value = c; s.appendChild(o); });
  }
  $("lang").addEventListener("click", function () {
    lang = lang === "zh" ? "en" : "zh";
    localStorage.setItem(LS_LANG, lang);
    translate(); causes(); banner();
    if (current) { render(current); } else if (me) { loadList(); }
  });
  $("back").addEventListener("click", function () { loadList(); });
  $("s-ack").addEventListener("click", function () { take("acknowledged"); });
  $("s-report").addEventListener("click", function () { take("reported"); });
  $("s-arrive").addEventListener("click", function () {
    var b = $("s-arrive");
    b.disabled = true;
    where().then(function (p) { take("arrived", p); });
  });
  $("handle").addEventListener("submit", function (e) {
    e.preventDefault();
    var f = $("photo").files[0];
    shrink(f).then(function (photo) {
      take("handled", {cause: $("cause").value, note: $("note").value}, photo);
    });
  });
  window.addEventListener("online", function () { flush(); });
  window.addEventListener("offline", banner);
  translate();
  if (!token()) { signedOut("nolink"); return; }
  // who and the list in parallel: one round trip less on a slow link
  var m = /^#order=(\d+)$/.exec(location.hash);
  var list = m ? null : api("/api/app/orders");
  api("/api/app/me").then(function (r) {
    if (r.status !== 200) { return; }
    me = r.body;
    causes();
    banner();
    flush();
    setInterval(function () { if (queue().length) { flush(); } }, 3000);
    return m ? open(Number(m[1])) : loadList(list);
  }, function () { banner(); });
})();
