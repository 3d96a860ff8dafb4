/* nightlights explore.html: the map, the filters and one site's months.
   Plain JavaScript, no library; every text from the data is set as text, never as markup.
   Part of nightlights (MIT licence). */
"use strict";
(function () {
  const D = JSON.parse(document.getElementById("data").textContent);
  const svg = document.getElementById("map");
  const NS = svg.namespaceURI; // the SVG namespace, taken from the page's own element
  const NONE = "\u0000none";
  const state = {
    lang: D.lang,
    classes: new Set(D.classes),
    batches: new Set(D.batches.map((b) => bkey(b.label))),
    counties: Boolean(D.counties && D.counties.shown),
    site: null,
    county: null,
  };
  const full = { x: 0, y: 0, w: D.view[0], h: D.view[1] };
  let view = Object.assign({}, full);
  const markerOf = new Map(D.batches.map((b) => [bkey(b.label), b.marker]));
  const siteNodes = new Map();
  const countyNodes = [];
  let highlight = null;

  function bkey(label) {
    return label === null || label === undefined ? NONE : String(label);
  }
  function w(key) {
    return D.words[state.lang][key];
  }
  function fill(template, values) {
    return template.replace(/\{(\w+)\}/g, (m, k) => (k in values ? values[k] : m));
  }
  function sv(tag, attrs, parent) {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (parent) parent.appendChild(node);
    return node;
  }
  function ht(tag, attrs, text, parent) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined && text !== null) node.textContent = text;
    if (parent) parent.appendChild(node);
    return node;
  }
  function pct(x) {
    if (x === null || x === undefined) return "–";
    const a = Math.abs(x) < 10 ? x.toFixed(1) : x.toFixed(0);
    return (x > 0 ? "+" : "") + a + "%";
  }
  function num(x) {
    return x === null || x === undefined ? "–" : Number(x.toPrecision(3)).toString();
  }
  function siteName(s) {
    return state.lang === "ko" && s.name_ko ? s.name_ko : s.name;
  }
  function otherName(s) {
    return state.lang === "ko" ? s.name : s.name_ko;
  }
  function ko(s, key) {
    return state.lang === "ko" && s[key + "_ko"] ? s[key + "_ko"] : s[key];
  }
  function batchName(label) {
    const b = D.batches.find((x) => bkey(x.label) === bkey(label));
    return b ? b.name[state.lang] : String(label);
  }
  function swatch(marker, color, parent, size) {
    const s = sv("svg", { viewBox: "-1.3 -1.3 2.6 2.6", width: size || 14, height: size || 14, class: "swatch", "aria-hidden": "true" }, parent);
    sv("path", { d: marker, fill: color, stroke: "#000", "stroke-width": 0.25 }, s);
    return s;
  }

  // ------------------------------------------------------------------ map
  const defs = sv("defs", {}, svg);
  const hatch = sv("pattern", { id: "hatch", patternUnits: "userSpaceOnUse", width: 40, height: 40, patternTransform: "rotate(45)" }, defs);
  sv("rect", { width: 40, height: 40, fill: "#fff" }, hatch);
  sv("line", { x1: 0, y1: 0, x2: 0, y2: 40, stroke: D.colors.invalid, "stroke-width": 8 }, hatch);
  const gCounties = sv("g", { id: "counties" }, svg);
  const gProvinces = sv("g", { id: "provinces" }, svg);
  const gCountry = sv("g", { id: "country" }, svg);
  const gSites = sv("g", { id: "sites" }, svg);

  if (D.counties) {
    for (const c of D.counties.units) {
      const p = sv("path", { d: c.d, class: "county", stroke: D.colors.border.county, "stroke-width": 0.7, "vector-effect": "non-scaling-stroke" }, gCounties);
      p.appendChild(sv("title"));
      p.addEventListener("click", () => {
        if (!dragged) selectCounty(c);
      });
      countyNodes.push([c, p]);
    }
  }
  if (D.borders) {
    sv("path", { d: D.borders.province, fill: "none", stroke: D.colors.border.province, "stroke-width": 1.4, "vector-effect": "non-scaling-stroke" }, gProvinces);
    sv("path", { d: D.borders.country, fill: "none", stroke: D.colors.border.country, "stroke-width": 1.8, "vector-effect": "non-scaling-stroke" }, gCountry);
  }
  const ordered = D.sites.slice().sort((a, b) => {
    const x = a.log_ratio, y = b.log_ratio;
    if (x === null && y === null) return 0;
    if (x === null) return 1;
    if (y === null) return -1;
    return y - x;
  });
  for (const s of D.sites) {
    const g = sv("g", { class: "site", tabindex: 0, role: "button", "data-site": s.id, "data-class": s.class }, gSites);
    sv("path", { d: markerOf.get(bkey(s.batch)), fill: D.colors.class[s.class], stroke: "#000", "stroke-width": 1, "vector-effect": "non-scaling-stroke" }, g);
    g.appendChild(sv("title"));
    g.addEventListener("click", (ev) => {
      ev.stopPropagation();
      if (!dragged) selectSite(s.id);
    });
    g.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" || ev.key === " ") {
        ev.preventDefault();
        selectSite(s.id);
      }
    });
    siteNodes.set(s.id, [s, g]);
  }

  function scale() {
    const r = svg.getBoundingClientRect();
    return Math.min(r.width / view.w, r.height / view.h) || 1;
  }
  function placeSites() {
    const k = 7 / scale(); // markers keep about 7 px whatever the zoom
    for (const [s, g] of siteNodes.values()) g.setAttribute("transform", `translate(${s.x} ${s.y}) scale(${k})`);
    if (highlight) highlight.setAttribute("r", 11 / scale());
  }
  function setView(v) {
    const minW = full.w / 40;
    const f = Math.min(Math.max(v.w, minW), full.w) / v.w;
    v = { x: v.x, y: v.y, w: v.w * f, h: v.h * f };
    v.x = Math.min(Math.max(v.x, full.x - v.w / 2), full.w - v.w / 2);
    v.y = Math.min(Math.max(v.y, full.y - v.h / 2), full.h - v.h / 2);
    view = v;
    svg.setAttribute("viewBox", `${v.x} ${v.y} ${v.w} ${v.h}`);
    placeSites();
  }
  function zoom(factor, cx, cy) {
    if (cx === undefined) {
      cx = view.x + view.w / 2;
      cy = view.y + view.h / 2;
    }
    setView({ x: cx - (cx - view.x) * factor, y: cy - (cy - view.y) * factor, w: view.w * factor, h: view.h * factor });
  }
  function toMap(ev) {
    const p = new DOMPoint(ev.clientX, ev.clientY).matrixTransform(svg.getScreenCTM().inverse());
    return [p.x, p.y];
  }
  svg.addEventListener("wheel", (ev) => {
    ev.preventDefault();
    const [x, y] = toMap(ev);
    zoom(Math.exp(Math.max(-1, Math.min(1, ev.deltaY * 0.002))), x, y);
  }, { passive: false });
  let drag = null;
  let dragged = false;
  svg.addEventListener("pointerdown", (ev) => {
    drag = { x: ev.clientX, y: ev.clientY, view: Object.assign({}, view), id: ev.pointerId };
    dragged = false;
  });
  svg.addEventListener("pointermove", (ev) => {
    if (!drag) return;
    const dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
    if (!dragged && Math.hypot(dx, dy) < 4) return;
    if (!dragged) svg.setPointerCapture(drag.id);
    dragged = true;
    const k = scale();
    setView({ x: drag.view.x - dx / k, y: drag.view.y - dy / k, w: drag.view.w, h: drag.view.h });
  });
  const endDrag = () => {
    drag = null;
  };
  svg.addEventListener("pointerup", endDrag);
  svg.addEventListener("pointercancel", endDrag);
  document.getElementById("zoom-in").addEventListener("click", () => zoom(0.6));
  document.getElementById("zoom-out").addEventListener("click", () => zoom(1 / 0.6));
  document.getElementById("zoom-reset").addEventListener("click", () => setView(Object.assign({}, full)));
  function fitWatermark() {
    // as large as the map box allows, rotated 25 degrees (hangul about 1 em a glyph, bold capitals about 0.75)
    const mark = document.getElementById("synthetic-watermark");
    if (!mark) return;
    const box = document.getElementById("map-box").getBoundingClientRect();
    let ems = 0;
    for (const ch of mark.textContent) ems += /[\u1100-\u11ff\u3130-\u318f\uac00-\ud7af]/.test(ch) ? 1 : 0.75;
    const size = Math.min(0.85 * box.width / (0.906 * ems), 0.85 * box.height / (0.423 * ems + 0.9), 110);
    mark.style.fontSize = Math.max(size, 12).toFixed(0) + "px";
  }
  window.addEventListener("resize", () => {
    placeSites();
    fitWatermark();
  });

  // ------------------------------------------------------------------ filters, list, legend
  function shown(s) {
    return state.classes.has(s.class) && state.batches.has(bkey(s.batch));
  }
  function applyFilters() {
    let n = 0;
    for (const [s, g] of siteNodes.values()) {
      const on = shown(s);
      g.style.display = on ? "" : "none";
      n += on;
    }
    for (const li of document.querySelectorAll("#site-list li")) {
      const s = siteNodes.get(li.dataset.site)[0];
      li.hidden = !shown(s);
    }
    if (highlight) highlight.style.display = state.site && shown(siteNodes.get(state.site)[0]) ? "" : "none";
    document.getElementById("list-title").textContent = fill(w("sites_list"), { n: n, all: D.sites.length });
    for (const [c, p] of countyNodes) {
      p.setAttribute("fill", state.counties ? c.fill || "url(#hatch)" : "#fff");
    }
    document.getElementById("county-legend").hidden = !state.counties;
  }
  function checkbox(parent, checked, onChange, id) {
    const label = ht("label", {}, null, parent);
    const box = ht("input", { type: "checkbox", id: id }, null, label);
    box.checked = checked;
    box.addEventListener("change", () => {
      onChange(box.checked);
      applyFilters();
    });
    return label;
  }
  function renderFilters() {
    const fc = document.getElementById("filter-class");
    fc.querySelectorAll("label").forEach((x) => x.remove());
    for (const c of D.classes) {
      const n = D.sites.filter((s) => s.class === c).length;
      const label = checkbox(fc, state.classes.has(c), (on) => (on ? state.classes.add(c) : state.classes.delete(c)), "class-" + c);
      swatch("M-1 -1H1V1H-1Z", D.colors.class[c], label);
      ht("span", {}, `${w("class_names")[c]} (${n})`, label);
    }
    const fb = document.getElementById("filter-batch");
    fb.querySelectorAll("label").forEach((x) => x.remove());
    for (const b of D.batches) {
      const k = bkey(b.label);
      const n = D.sites.filter((s) => bkey(s.batch) === k).length;
      const label = checkbox(fb, state.batches.has(k), (on) => (on ? state.batches.add(k) : state.batches.delete(k)), "batch-" + k.replace(NONE, "none"));
      swatch(b.marker, "#ddd", label);
      ht("span", {}, `${b.name[state.lang]} (${n})`, label);
    }
    const fl = document.getElementById("layers");
    fl.querySelectorAll("label").forEach((x) => x.remove());
    fl.hidden = !(D.counties && D.counties.shown);
    if (!fl.hidden) {
      const label = checkbox(fl, state.counties, (on) => (state.counties = on), "layer-counties");
      ht("span", {}, w("county_layer"), label);
    }
  }
  function renderLegend() {
    const box = document.getElementById("county-legend");
    box.textContent = "";
    if (!D.counties || !D.counties.shown) return;
    ht("div", { class: "legend-title" }, w("county_legend"), box);
    const bar = ht("div", { class: "bar" }, null, box);
    bar.style.background = `linear-gradient(to right, ${D.counties.stops.join(", ")})`;
    const ticks = ht("div", { class: "ticks" }, null, box);
    for (const [pos, p] of D.counties.ticks) {
      const t = ht("span", {}, p === 0 ? "0%" : (p > 0 ? "+" : "") + p + "%", ticks);
      t.style.left = (100 * pos).toFixed(2) + "%";
    }
    const nd = ht("div", { class: "nodata" }, null, box);
    ht("span", { class: "hatch" }, null, nd);
    ht("span", {}, w("no_county_data"), nd);
  }
  function renderList() {
    const list = document.getElementById("site-list");
    list.textContent = "";
    for (const s of ordered) {
      const li = ht("li", { "data-site": s.id }, null, list);
      const b = ht("button", { type: "button" }, null, li);
      swatch(markerOf.get(bkey(s.batch)), D.colors.class[s.class], b);
      ht("span", { class: "name" }, siteName(s), b);
      ht("span", { class: "num" }, pct(s.change_pct), b);
      b.addEventListener("click", () => selectSite(s.id));
      if (state.site === s.id) li.classList.add("selected");
    }
  }
  function renderTooltips() {
    for (const [s, g] of siteNodes.values()) {
      g.querySelector("title").textContent = `${siteName(s)}: ${w("class_names")[s.class]}, ${pct(s.change_pct)} (${batchName(s.batch)})`;
      g.setAttribute("aria-label", siteName(s));
    }
    for (const [c, p] of countyNodes) {
      const ch = c.log_change === null ? w("no_county_data") : pct(100 * (Math.exp(c.log_change) - 1));
      p.querySelector("title").textContent = `${ko(c, "name")} (${ko(c, "province") || ""}): ${ch}`;
    }
  }

  // ------------------------------------------------------------------ details
  function row(dl, term, value) {
    ht("dt", {}, term, dl);
    ht("dd", {}, value === null || value === undefined || value === "" ? w("not_given") : value, dl);
  }
  function selectSite(id) {
    const entry = siteNodes.get(id);
    if (!entry) return;
    const [s, g] = entry;
    state.site = id;
    state.county = null;
    if (!highlight) highlight = sv("circle", { class: "highlight", fill: "none", stroke: "#EE3377", "stroke-width": 3, "vector-effect": "non-scaling-stroke", "pointer-events": "none" });
    gSites.insertBefore(highlight, gSites.firstChild);
    highlight.setAttribute("cx", s.x);
    highlight.setAttribute("cy", s.y);
    placeSites();
    for (const li of document.querySelectorAll("#site-list li")) li.classList.toggle("selected", li.dataset.site === id);
    for (const [, n] of siteNodes.values()) n.classList.toggle("selected", n === g);
    renderDetail();
  }
  function selectCounty(c) {
    state.county = c;
    state.site = null;
    if (highlight) highlight.remove();
    renderDetail();
  }
  function renderDetail() {
    const box = document.getElementById("detail");
    box.textContent = "";
    if (state.county) return countyDetail(box, state.county);
    if (!state.site) {
      ht("p", { class: "pick" }, w("pick"), box);
      return;
    }
    const s = siteNodes.get(state.site)[0];
    const h = ht("h2", { id: "site-name" }, siteName(s), box);
    if (otherName(s)) ht("span", { class: "other" }, " " + otherName(s), h);
    const badge = ht("p", { class: "badge", id: "site-class" }, null, box);
    swatch(markerOf.get(bkey(s.batch)), D.colors.class[s.class], badge, 18);
    ht("span", {}, w("class_names")[s.class], badge);
    const ch = ht("p", { class: "change", id: "site-change" }, null, box);
    if (s.change_pct === null) {
      ch.textContent = w("no_change");
    } else {
      ht("span", { class: "label" }, w("change") + ": ", ch);
      ht("b", {}, pct(s.change_pct), ch);
      ht("span", {}, " (" + fill(w("interval"), { lo: pct(s.ci_low), hi: pct(s.ci_high) }) + ")", ch);
    }
    series(box, s);
    const dl = ht("dl", { id: "site-facts" }, null, box);
    row(dl, w("matched"), s.n_months === null ? null : String(s.n_months));
    row(dl, w("yearly"), `${D.years[0]}: ${num(s.baseline_value)} · ${D.years[1]}: ${num(s.target_value)} nW/cm²/sr`);
    row(dl, w("Batch"), batchName(s.batch));
    row(dl, w("Province"), ko(s, "province"));
    row(dl, w("County"), ko(s, "county"));
    row(dl, w("groundbreaking"), s.groundbreaking);
    row(dl, w("inauguration"), s.inauguration);
    row(dl, w("location"), s.location_confidence);
    row(dl, w("Source"), s.source);
    ht("p", { class: "site-id" }, "site_id: " + s.id, box);
  }
  function countyDetail(box, c) {
    const h = ht("h2", { id: "county-name" }, ko(c, "name"), box);
    const other = state.lang === "ko" ? c.name : c.name_ko;
    if (other && other !== ko(c, "name")) ht("span", { class: "other" }, " " + other, h);
    const dl = ht("dl", {}, null, box);
    row(dl, w("county"), ko(c, "name"));
    row(dl, w("Province"), ko(c, "province"));
    row(dl, w("county_change"), c.log_change === null ? w("no_county_data") : pct(100 * (Math.exp(c.log_change) - 1)));
    row(dl, w("county_months"), c.n_months === null ? null : String(c.n_months));
  }

  // one site's 24 months: baseline and target year side by side
  function dateIndex(text) {
    const m = /^(\d{4})-(\d{2})(?:-(\d{2}))?$/.exec(text || "");
    if (!m) return null;
    const days = new Date(Number(m[1]), Number(m[2]), 0).getDate();
    const inMonth = m[3] ? (Number(m[3]) - 1) / days : 0.5;
    const year = D.months.indexOf(m[1]); // annual data: one slot per year
    if (year >= 0) return year + (Number(m[2]) - 1 + inMonth) / 12;
    const i = D.months.indexOf(`${m[1]}-${m[2]}`);
    return i < 0 ? null : i + inMonth;
  }
  function niceStep(top) {
    const raw = top / 4, p = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const f of [1, 2, 2.5, 5, 10]) if (f * p >= raw) return f * p;
    return 10 * p;
  }
  function series(box, s) {
    const W = 360, H = 190, L = 34, R = 8, T = 14, B = 30;
    const n = D.months.length, per = n / 2, cw = (W - L - R) / n; // per: months of a year (1 for annual data)
    const X = (i) => L + (i + 0.5) * cw;
    const vals = [];
    s.radiance.forEach((v, i) => s.valid[i] && v !== null && vals.push(v));
    s.ring.forEach((v) => v !== null && vals.push(v));
    for (const v of [s.baseline_value, s.target_value]) if (v !== null) vals.push(v);
    const top = Math.max(0.1, ...vals) * 1.12;
    const Y = (v) => T + (H - T - B) * (1 - v / top);
    ht("h3", {}, w("series_title"), box);
    const c = sv("svg", { viewBox: `0 0 ${W} ${H}`, class: "series", id: "series", role: "img", "aria-label": w("series_title") }, box);
    sv("rect", { x: L, y: T, width: per * cw, height: H - T - B, fill: D.colors.baseline }, c);
    sv("rect", { x: L + per * cw, y: T, width: per * cw, height: H - T - B, fill: D.colors.target }, c);
    const step = niceStep(top);
    for (let v = 0; v <= top + 1e-9; v += step) {
      sv("line", { x1: L, x2: W - R, y1: Y(v), y2: Y(v), stroke: "#fff", "stroke-width": 0.8 }, c);
      const t = sv("text", { x: L - 3, y: Y(v), "text-anchor": "end", "dominant-baseline": "middle", class: "tick" }, c);
      t.textContent = Number(v.toPrecision(3)).toString();
    }
    sv("line", { x1: L, x2: W - R, y1: Y(0), y2: Y(0), stroke: "#000", "stroke-width": 0.8 }, c);
    D.years.forEach((y, k) => {
      const t = sv("text", { x: L + (k + 0.5) * per * cw, y: H - 6, "text-anchor": "middle", class: "year" }, c);
      t.textContent = state.lang === "ko" ? `${y}년` : String(y);
      for (const m of per === 12 ? [1, 4, 7, 10] : []) {
        const i = k * 12 + m - 1;
        sv("line", { x1: X(i), x2: X(i), y1: Y(0), y2: Y(0) + 3, stroke: "#000", "stroke-width": 0.6 }, c);
        const mt = sv("text", { x: X(i), y: Y(0) + 11, "text-anchor": "middle", class: "tick" }, c);
        mt.textContent = String(m);
      }
    });
    const yl = sv("text", { x: 9, y: T + (H - T - B) / 2, transform: `rotate(-90 9 ${T + (H - T - B) / 2})`, "text-anchor": "middle", class: "tick" }, c);
    yl.textContent = "nW/cm²/sr";
    const yearly = [[0, s.baseline_value], [per, s.target_value]];
    for (const [i0, v] of yearly) {
      if (v !== null) sv("line", { x1: L + i0 * cw, x2: L + (i0 + per) * cw, y1: Y(v), y2: Y(v), stroke: "#009988", "stroke-width": 2, class: "yearly" }, c);
    }
    for (const [key, dash] of [["groundbreaking", "2 2"], ["inauguration", "5 2"]]) {
      const i = dateIndex(s[key]);
      if (i !== null) sv("line", { x1: L + i * cw, x2: L + i * cw, y1: T, y2: Y(0), stroke: "#000", "stroke-width": 1.1, "stroke-dasharray": dash, class: key }, c);
    }
    let ring = "";
    let line = "";
    s.ring.forEach((v, i) => (ring += v === null ? "" : `${ring && s.ring[i - 1] !== null ? "L" : "M"}${X(i).toFixed(1)} ${Y(v).toFixed(1)}`));
    s.radiance.forEach((v, i) => {
      const ok = s.valid[i] && v !== null;
      const prev = i > 0 && s.valid[i - 1] && s.radiance[i - 1] !== null;
      if (ok) line += `${prev ? "L" : "M"}${X(i).toFixed(1)} ${Y(v).toFixed(1)}`;
    });
    if (ring) sv("path", { d: ring, fill: "none", stroke: "#777", "stroke-width": 1, "stroke-dasharray": "3 2" }, c);
    if (line) sv("path", { d: line, fill: "none", stroke: "#000", "stroke-width": 1.3 }, c);
    s.radiance.forEach((v, i) => {
      const m = D.months[i];
      let node;
      if (s.valid[i] && v !== null) {
        node = sv("circle", { cx: X(i), cy: Y(v), r: 2.6, fill: "#000", class: "month valid", "data-month": m }, c);
        node.appendChild(sv("title")).textContent = fill(w("month_value"), { m: m, v: num(v) });
      } else {
        const x = X(i), y = Y(0) - 5, d = 3;
        node = sv("path", { d: `M${x - d} ${y - d}L${x + d} ${y + d}M${x - d} ${y + d}L${x + d} ${y - d}`, stroke: D.colors.invalid, "stroke-width": 1.4, class: "month invalid", "data-month": m }, c);
        const text = s.valid_fraction[i] !== null ? fill(w("month_invalid"), { m: m, f: num(s.valid_fraction[i]) }) : fill(w("month_missing"), { m: m });
        node.appendChild(sv("title")).textContent = text;
      }
    });
    const key = ht("ul", { class: "key" }, null, box);
    const item = (draw, text) => {
      const li = ht("li", {}, null, key);
      const k = sv("svg", { viewBox: "0 0 22 12", width: 22, height: 12, "aria-hidden": "true" }, li);
      draw(k);
      ht("span", {}, text, li);
    };
    item((k) => { sv("line", { x1: 1, x2: 21, y1: 6, y2: 6, stroke: "#000", "stroke-width": 1.3 }, k); sv("circle", { cx: 11, cy: 6, r: 2.6 }, k); }, w("valid"));
    item((k) => sv("path", { d: "M8 3L14 9M8 9L14 3", stroke: D.colors.invalid, "stroke-width": 1.4 }, k), w("invalid"));
    item((k) => sv("line", { x1: 1, x2: 21, y1: 6, y2: 6, stroke: "#777", "stroke-dasharray": "3 2" }, k), w("ring"));
    item((k) => sv("line", { x1: 1, x2: 21, y1: 6, y2: 6, stroke: "#009988", "stroke-width": 2 }, k), w("yearly_line"));
    item((k) => sv("line", { x1: 11, x2: 11, y1: 0, y2: 12, stroke: "#000", "stroke-width": 1.1, "stroke-dasharray": "2 2" }, k), w("groundbreaking"));
    item((k) => sv("line", { x1: 11, x2: 11, y1: 0, y2: 12, stroke: "#000", "stroke-width": 1.1, "stroke-dasharray": "5 2" }, k), w("inauguration"));
    item((k) => sv("rect", { x: 1, y: 1, width: 20, height: 10, fill: D.colors.baseline }, k), w("baseline"));
    item((k) => sv("rect", { x: 1, y: 1, width: 20, height: 10, fill: D.colors.target }, k), w("target"));
  }

  // ------------------------------------------------------------------ language
  function setLang(lang) {
    state.lang = lang;
    document.documentElement.lang = lang;
    for (const node of document.querySelectorAll("[data-w]")) node.textContent = w(node.dataset.w);
    document.getElementById("headline").textContent = D.headline[lang];
    document.title = (D.synthetic ? w("tag") : "") + w("title");
    document.getElementById("credit").textContent = D.credit[lang];
    for (const b of document.querySelectorAll("[data-lang]")) b.setAttribute("aria-pressed", String(b.dataset.lang === lang));
    document.getElementById("zoom-in").title = w("zoom_in");
    document.getElementById("zoom-out").title = w("zoom_out");
    document.getElementById("zoom-reset").title = w("reset");
    renderFilters();
    renderLegend();
    renderList();
    renderTooltips();
    renderDetail();
    applyFilters();
    fitWatermark();
  }
  for (const b of document.querySelectorAll("[data-lang]")) b.addEventListener("click", () => setLang(b.dataset.lang));

  const asked = new URLSearchParams(location.hash.slice(1));
  setLang(asked.get("lang") === "ko" || asked.get("lang") === "en" ? asked.get("lang") : D.lang);
  setView(Object.assign({}, full));
  if (asked.get("site")) selectSite(asked.get("site"));
  document.body.dataset.ready = "1";
})();
