// Charts as inline SVG, drawn here: bars (grouped series per bin) and lines over time.

const NS = "http://www.w3.org/2000/svg";
export const COLORS = ["#2f7ed8", "#d9534f", "#f0ad4e", "#5cb85c", "#8e44ad", "#16a085", "#7f8c8d"];

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

export function number(v) {
  if (v === 0) return "0";
  const a = Math.abs(v);
  return a >= 100 ? String(Math.round(v)) : a >= 1 ? String(Math.round(v * 10) / 10) : v.toPrecision(2);
}

// The chart under its title (HTML, so a long title never runs into the legend).
function figure(title, svg) {
  const f = document.createElement("figure");
  f.className = "chart-box";
  const caption = document.createElement("figcaption");
  caption.textContent = title;
  f.append(caption, svg);
  return f;
}

function frame(width, height, max, title, yFormat) {
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-label": title });
  const pad = { l: 44, r: 10, t: 22, b: 28 };
  const ih = height - pad.t - pad.b;
  for (let i = 0; i <= 4; i++) {
    const y = pad.t + ih - (ih * i) / 4;
    svg.append(s("line", { x1: pad.l, x2: width - pad.r, y1: y, y2: y, class: "grid" }));
    svg.append(s("text", { x: pad.l - 4, y: y + 4, class: "axis", "text-anchor": "end" }, yFormat((max * i) / 4)));
  }
  return { svg, pad, iw: width - pad.l - pad.r, ih };
}

function legend(svg, names, width) {
  let x = width - 10;
  [...names].reverse().forEach((name, ri) => {
    const i = names.length - 1 - ri;
    const w = 14 + name.length * 6.5;
    x -= w;
    svg.append(s("rect", { x, y: 6, width: 10, height: 10, fill: COLORS[i % COLORS.length] }));
    svg.append(s("text", { x: x + 13, y: 15, class: "axis" }, name));
  });
}

// bins: [{label, values: [n per series]}]
export function barChart({ title, series, bins, width = 720, height = 220, yFormat = number }) {
  const max = niceMax(Math.max(0, ...bins.flatMap((b) => b.values)));
  const { svg, pad, iw, ih } = frame(width, height, max, title, yFormat);
  const bw = iw / Math.max(1, bins.length);
  const longest = Math.max(1, ...bins.map((b) => String(b.label).length));
  const every = Math.max(1, Math.ceil((longest * 6.2 + 8) / bw));
  bins.forEach((bin, i) => {
    const x0 = pad.l + i * bw;
    const inner = (bw * 0.8) / series.length;
    bin.values.forEach((v, j) => {
      const bh = (ih * v) / max;
      const r = s("rect", { x: x0 + bw * 0.1 + j * inner, y: pad.t + ih - bh, width: Math.max(1, inner - 1), height: bh, fill: COLORS[j % COLORS.length] });
      r.append(s("title", {}, `${bin.label} ${series[j]}: ${v}`));
      svg.append(r);
    });
    if (i % every === 0) svg.append(s("text", { x: x0 + bw / 2, y: height - 10, class: "axis", "text-anchor": "middle" }, bin.label));
  });
  legend(svg, series, width);
  return figure(title, svg);
}

// lines: [{name, points: [[x (ms), y], ...]}]
export function lineChart({ title, lines, width = 720, height = 220, yFormat = number, xFormat, xDomain }) {
  const all = lines.flatMap((l) => l.points);
  const max = niceMax(Math.max(0, ...all.map((p) => p[1])));
  const { svg, pad, iw, ih } = frame(width, height, max, title, yFormat);
  if (!all.length) {
    svg.append(s("text", { x: width / 2, y: height / 2, class: "axis", "text-anchor": "middle" }, "no data yet"));
    return figure(title, svg);
  }
  const xs = all.map((p) => p[0]);
  const x0 = xDomain ? xDomain[0] : Math.min(...xs);
  const x1 = xDomain ? Math.max(xDomain[1], x0 + 1) : Math.max(...xs, x0 + 1);
  const fx = (x) => pad.l + ((x - x0) / (x1 - x0)) * iw;
  const fy = (y) => pad.t + ih - (ih * y) / max;
  const fmt = xFormat || ((x) => new Date(x).toLocaleTimeString(undefined, { hour12: false }));
  for (let i = 0; i <= 4; i++) {
    const x = x0 + ((x1 - x0) * i) / 4;
    svg.append(s("text", { x: fx(x), y: height - 10, class: "axis", "text-anchor": "middle" }, fmt(x)));
  }
  lines.forEach((line, i) => {
    const d = line.points.map((p, k) => `${k ? "L" : "M"}${fx(p[0]).toFixed(1)},${fy(p[1]).toFixed(1)}`).join(" ");
    svg.append(s("path", { d, fill: "none", stroke: COLORS[i % COLORS.length], "stroke-width": 2 }));
    for (const p of line.points.length < 60 ? line.points : []) {
      const c = s("circle", { cx: fx(p[0]), cy: fy(p[1]), r: 2.5, fill: COLORS[i % COLORS.length] });
      c.append(s("title", {}, `${line.name}: ${p[1]}`));
      svg.append(c);
    }
  });
  legend(svg, lines.map((l) => l.name), width);
  return figure(title, svg);
}

// A timeline (Gantt) of spans: [{row, start, end, kind, label}] on rows in order.
export function gantt({ title, rows, spans, width = 900 }) {
  const rowH = 22;
  const pad = { l: 170, r: 12, t: 6, b: 24 };
  const height = pad.t + pad.b + rows.length * rowH;
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart gantt", role: "img", "aria-label": title });
  if (!spans.length) return figure(title, svg);
  const t0 = Math.min(...spans.map((x) => x.start));
  const t1 = Math.max(...spans.map((x) => x.end), t0 + 1);
  const iw = width - pad.l - pad.r;
  const fx = (t) => pad.l + ((t - t0) / (t1 - t0)) * iw;
  rows.forEach((row, i) => {
    const y = pad.t + i * rowH;
    svg.append(s("text", { x: pad.l - 6, y: y + 15, class: "axis", "text-anchor": "end" }, row));
    svg.append(s("line", { x1: pad.l, x2: width - pad.r, y1: y + rowH, y2: y + rowH, class: "grid" }));
  });
  for (const span of spans) {
    const i = rows.indexOf(span.row);
    const y = pad.t + i * rowH + 4;
    const x = fx(span.start);
    const w = Math.max(2, fx(span.end) - x);
    const r = s("rect", { x, y, width: w, height: rowH - 8, class: `span k-${span.kind}`, rx: 2 });
    r.append(s("title", {}, span.label));
    svg.append(r);
  }
  for (let i = 0; i <= 4; i++) {
    const t = t0 + ((t1 - t0) * i) / 4;
    svg.append(s("text", { x: fx(t), y: height - 6, class: "axis", "text-anchor": "middle" }, `+${((t - t0) / 1000).toFixed(2)} s`));
  }
  return figure(title, svg);
}
