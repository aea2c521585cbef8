// The view leader's page: reads the cluster's snapshot from /ui/events (server-sent events, one
// a second) and the ring's arcs from /ui/ring.json (once per epoch), and draws them. Plain browser
// JavaScript, no build step, nothing loaded from elsewhere. Text from the view leader (server IDs,
// addresses) is only ever set as text, never as HTML.
/* global document, window, EventSource, fetch */
'use strict';

(function () {
  const SVG = 'http://www.w3.org/2000/svg';
  const CENTRE = 200;
  const RING_R = 160;
  const SHARE_R = 122;
  /** Servers that left stay on the page this long, marked as gone. */
  const LEFT_SHOWN_MS = 10 * 60 * 1000;
  /** Identity colours (a server keeps its colour while it is in the view). */
  const PALETTE = [
    '#39c5cf',
    '#f778ba',
    '#ff9f43',
    '#7c83ff',
    '#e3c04d',
    '#56d4a8',
    '#ff7b72',
    '#79c0ff',
    '#c297ff',
    '#a0d94f',
  ];

  const $ = (id) => document.getElementById(id);
  const colours = new Map();
  let ringKey = '';
  let lastSnapshot = null;
  let lastMessageMs = 0;
  let source = null;

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (name === 'text') node.textContent = value;
      else if (name === 'style') node.setAttribute('style', value);
      else node.setAttribute(name, value);
    }
    for (const child of children || []) if (child) node.appendChild(child);
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (name === 'text') node.textContent = value;
      else node.setAttribute(name, String(value));
    }
    return node;
  }

  function colourOf(id, currentIds) {
    if (!colours.has(id)) {
      const taken = new Set(
        [...currentIds].filter((i) => colours.has(i)).map((i) => colours.get(i)),
      );
      let pick = 0;
      while (taken.has(PALETTE[pick % PALETTE.length]) && pick < PALETTE.length) pick++;
      colours.set(id, PALETTE[pick % PALETTE.length]);
    }
    return colours.get(id);
  }

  // ---- formatting ----

  const pad = (n) => String(n).padStart(2, '0');
  function clock(ms) {
    const d = new Date(ms);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }
  function ago(seconds) {
    if (seconds < 60) return `${seconds.toFixed(1)} s ago`;
    if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
    return `${Math.floor(seconds / 3600)} h ago`;
  }
  const count = (n) => (n === null || n === undefined ? '?' : n.toLocaleString('en-US'));
  const shortId = (id) => (id.length > 13 ? `${id.slice(0, 8)}…${id.slice(-4)}` : id);

  // ---- the ring ----

  function point(fraction, r) {
    const angle = fraction * 2 * Math.PI - Math.PI / 2; // 0 at the top, clockwise
    return [CENTRE + r * Math.cos(angle), CENTRE + r * Math.sin(angle)];
  }

  function arcPath(start, end, r) {
    const [x1, y1] = point(start, r);
    const [x2, y2] = point(end, r);
    const large = end - start > 0.5 ? 1 : 0;
    return `M${x1.toFixed(2)} ${y1.toFixed(2)}A${r} ${r} 0 ${large} 1 ${x2.toFixed(2)} ${y2.toFixed(2)}`;
  }

  function drawRing(ring, status) {
    const group = $('ring-arcs');
    group.replaceChildren();
    const ids = status.servers.map((s) => s.id);
    for (const server of ring.servers) {
      const parts = [];
      for (let i = 0; i < server.arcs.length; i += 2) {
        if (server.arcs[i + 1] > server.arcs[i]) {
          parts.push(arcPath(server.arcs[i], server.arcs[i + 1], RING_R));
        }
      }
      group.appendChild(
        svg('path', {
          class: 'ring-arc',
          'data-id': server.id,
          d: parts.join(''),
          stroke: colourOf(server.id, ids),
        }),
      );
    }
  }

  function drawShares(status) {
    const group = $('share-arcs');
    group.replaceChildren();
    const ids = status.servers.map((s) => s.id);
    const ordered = [...status.servers].sort((a, b) => (a.id < b.id ? -1 : 1));
    let start = 0;
    for (const s of ordered) {
      const size = s.primaryShare / 100;
      if (size <= 0) continue;
      const gap = ordered.length > 1 ? 0.004 : 0;
      const end = Math.min(1, start + size);
      if (size >= 0.999) {
        group.appendChild(
          svg('circle', {
            class: 'share-arc',
            cx: CENTRE,
            cy: CENTRE,
            r: SHARE_R,
            stroke: colourOf(s.id, ids),
          }),
        );
      } else {
        group.appendChild(
          svg('path', {
            class: 'share-arc',
            d: arcPath(start + gap / 2, end - gap / 2, SHARE_R),
            stroke: colourOf(s.id, ids),
          }),
        );
      }
      const [lx, ly] = point(start + size / 2, SHARE_R - 24);
      group.appendChild(
        svg('text', {
          class: 'share-label',
          x: lx.toFixed(1),
          y: (ly + 4).toFixed(1),
          'text-anchor': 'middle',
          text: `${s.primaryShare.toFixed(1)}%`,
        }),
      );
      start = end;
    }
  }

  async function refreshRing(status) {
    const key = `${status.epoch}:${status.servers.map((s) => s.id).join(',')}`;
    if (key === ringKey) return;
    ringKey = key;
    try {
      const response = await fetch('/ui/ring.json', { cache: 'no-store' });
      const ring = await response.json();
      if (key !== ringKey) return; // a newer view arrived meanwhile
      drawRing(ring, status);
      markLate(status);
    } catch {
      ringKey = ''; // try again with the next snapshot
    }
  }

  function markLate(status) {
    const late = new Set(status.servers.filter((s) => s.late).map((s) => s.id));
    for (const path of $('ring-arcs').children) {
      path.classList.toggle('late', late.has(path.getAttribute('data-id')));
    }
  }

  // ---- servers ----

  function stateOf(s) {
    if (s.late) return 'late';
    if (s.stage === 'copying') return 'copying';
    if (s.stage === 'copied') return 'copied';
    return 'up';
  }

  const STATE_TEXT = {
    up: 'up',
    copying: 'copying',
    copied: 'copied · at barrier',
    late: 'late',
    left: 'left',
  };

  function bar(percent, complete, colour) {
    const fill = el('div', { class: `fill${complete ? ' complete' : ''}` });
    if (colour) fill.style.background = colour;
    fill.style.width = `${Math.max(0, Math.min(100, percent)).toFixed(1)}%`;
    return el('div', { class: 'bar' }, [fill]);
  }

  function metric(value, unit) {
    return el('div', { class: 'metric' }, [
      el('span', { class: 'value', text: value }),
      unit ? el('span', { class: 'unit', text: ` ${unit}` }) : null,
    ]);
  }

  function serverRow(s, ids) {
    const state = stateOf(s);
    let copyText;
    let copyPercent = 100;
    if (s.copiesTotal === null) {
      copyText = s.stage === 'copying' ? 'planning…' : 'no copies reported';
      copyPercent = s.stage === 'copying' ? 0 : 100;
    } else {
      copyPercent = s.copiesTotal === 0 ? 100 : (100 * s.copiesDone) / s.copiesTotal;
      copyText = `${count(s.copiesDone)} / ${count(s.copiesTotal)} copies`;
      if (s.copyRatePerS !== null) copyText += ` · ${count(Math.round(s.copyRatePerS))}/s`;
    }
    return el('div', { class: 'server', 'data-state': state, 'data-address': s.address }, [
      el('span', { class: 'swatch', style: `background:${colourOf(s.id, ids)}` }),
      el('div', {}, [
        el('div', { class: 'addr', text: s.address }),
        el('div', { class: 'id', text: shortId(s.id), title: s.id }),
      ]),
      metric(count(s.keys), 'keys'),
      el('div', { class: 'mini' }, [
        el('span', { class: 'text', text: `${s.share.toFixed(1)}% of the ring` }),
        bar(s.share, true, colourOf(s.id, ids)),
      ]),
      el('div', { class: 'mini' }, [
        el('span', { class: `badge ${state === 'up' ? '' : state}`, text: STATE_TEXT[state] }),
        el('span', { class: 'text', text: `heard ${ago(s.lastHeartbeatS)}` }),
      ]),
      el('div', { class: 'mini' }, [
        el('span', { class: 'text', text: copyText }),
        bar(copyPercent, s.stage !== 'copying'),
      ]),
    ]);
  }

  function leftRow(entry, server, ids) {
    return el('div', { class: 'server', 'data-state': 'left', 'data-address': server.address }, [
      el('span', { class: 'swatch', style: `background:${colourOf(server.id, ids)}` }),
      el('div', {}, [
        el('div', { class: 'addr', text: server.address }),
        el('div', { class: 'id', text: shortId(server.id), title: server.id }),
      ]),
      metric('–', ''),
      el('div', { class: 'mini' }, [el('span', { class: 'text', text: 'not in the view' })]),
      el('div', { class: 'mini' }, [
        el('span', { class: 'badge left', text: 'left' }),
        el('span', { class: 'text', text: `${server.cause} at ${clock(entry.atMs)}` }),
      ]),
      el('div', { class: 'mini' }, [
        el('span', { class: 'text', text: `left in epoch ${entry.epoch}` }),
      ]),
    ]);
  }

  function renderServers(status) {
    const ids = status.servers.map((s) => s.id);
    const inView = new Set(ids);
    const rows = status.servers.map((s) => serverRow(s, ids));
    const shown = new Set();
    const now = Date.now();
    for (const entry of [...status.history].reverse()) {
      if (now - entry.atMs > LEFT_SHOWN_MS) break;
      for (const server of entry.left) {
        if (inView.has(server.id) || shown.has(server.id)) continue;
        if (status.servers.some((s) => s.address === server.address)) continue; // restarted
        shown.add(server.id);
        rows.push(leftRow(entry, server, ids));
      }
    }
    if (rows.length === 0) rows.push(el('div', { class: 'empty', text: 'no servers yet' }));
    $('servers').replaceChildren(...rows);
  }

  // ---- summary, progress, history ----

  function renderSummary(status) {
    const epoch = $('epoch');
    epoch.textContent = String(status.epoch);
    epoch.setAttribute('data-epoch', String(status.epoch));
    const n = status.servers.length;
    $('ring-sub').textContent = `${n} server${n === 1 ? '' : 's'} · ${Math.min(3, n)} replicas`;
    $('server-count').textContent = String(n);
    $('placement').textContent = `epoch ${status.placementEpoch}`;
    $('timeout').textContent = `${status.failureTimeoutS} s`;
    const pill = $('state-pill');
    pill.className = `state-pill ${status.rebalancing ? 'rebalancing' : 'settled'}`;
    pill.textContent = status.rebalancing ? 'rebalancing' : 'settled';
    const p = status.progress;
    $('progress-epoch').textContent = String(p.epoch);
    let text = `${p.percent.toFixed(1)}% · ${count(p.copiesDone)} / ${count(p.copiesTotal)} copies`;
    if (status.rebalancing && p.ratePerS) {
      text += ` · ${count(Math.round(p.ratePerS))} copies/s`;
      const left = p.copiesTotal - p.copiesDone;
      if (left > 0) text += ` · about ${Math.ceil(left / p.ratePerS)} s left`;
    }
    $('progress-text').textContent = text;
    const fill = $('progress-fill');
    fill.style.width = `${p.percent}%`;
    fill.classList.toggle('complete', !status.rebalancing);
  }

  function renderHistory(status) {
    $('history-since').textContent =
      `As seen by this view leader since ${new Date(status.leadingSinceMs).toLocaleString()}` +
      ' (kept in its memory; newest first).';
    const items = [...status.history].reverse().map((entry) => {
      const lines = [
        ...entry.joined.map((s) =>
          el('div', {
            class: 'join',
            'data-joined-address': s.address,
            text: `+ ${s.address} joined`,
          }),
        ),
        ...entry.left.map((s) =>
          el('div', {
            class: 'leave',
            'data-left-address': s.address,
            text: `− ${s.address} left (${s.cause})`,
          }),
        ),
      ];
      if (lines.length === 0) lines.push(el('div', { text: 'epoch raised (no join or leave)' }));
      return el('li', { 'data-history-epoch': String(entry.epoch) }, [
        el('div', {}, [
          el('div', { class: 'epoch-no', text: String(entry.epoch) }),
          el('div', { class: 'time', text: clock(entry.atMs) }),
        ]),
        el('div', { class: 'change' }, lines),
      ]);
    });
    if (items.length === 0) items.push(el('li', { class: 'empty', text: 'no view change yet' }));
    $('history').replaceChildren(...items);
  }

  // ---- snapshots ----

  function render(snapshot) {
    lastSnapshot = snapshot;
    lastMessageMs = Date.now();
    const banner = $('banner');
    if (snapshot.role !== 'leader') {
      $('main').hidden = true;
      banner.hidden = false;
      banner.replaceChildren();
      if (snapshot.role === 'follower' && snapshot.leader) {
        banner.append(
          'This view leader member does not lead. The leader is ',
          el('a', { href: `http://${snapshot.leader}/`, text: snapshot.leader }),
          '.',
        );
      } else if (snapshot.role === 'follower') {
        banner.append('This view leader member does not lead, and no leader is known yet.');
      } else {
        banner.append(`The view leader cannot answer: ${snapshot.error}`);
      }
      return;
    }
    $('main').hidden = false;
    banner.hidden = true;
    const status = snapshot.status;
    renderSummary(status);
    drawShares(status);
    renderServers(status);
    renderHistory(status);
    markLate(status);
    void refreshRing(status);
  }

  function setLive(state, text) {
    $('live').setAttribute('data-state', state);
    $('live-text').textContent = text;
  }

  function tickLive() {
    if (source === null) return;
    if (source.readyState === EventSource.OPEN && lastSnapshot !== null) {
      const age = (Date.now() - lastMessageMs) / 1000;
      setLive(age < 5 ? 'live' : 'lost', age < 5 ? 'live' : `no update for ${Math.round(age)} s`);
    }
  }

  function connect() {
    source = new EventSource('/ui/events');
    source.onmessage = (event) => {
      render(JSON.parse(event.data));
      setLive('live', 'live');
    };
    source.onerror = () => setLive('lost', 'view leader unreachable; reconnecting…');
  }

  $('where').textContent = `view leader ${window.location.host}`;
  connect();
  window.setInterval(tickLive, 1000);
})();
