// sasnp operator page: sign-in, search, map of CPTS territories and slots, hold → confirm.
// Plain modern JS, no build step. Leaflet (global `L`) is served by sasnp from npm's dist files.
// Everything comes from this server: the page works without internet. Feed data (names,
// addresses…) is only ever put in the page as text, never as HTML.
'use strict';

(() => {
  const TOKEN_KEY = 'sasnp.operatorToken';
  const TZ = 'Europe/Paris';
  const BUCKETS = { '0-4h': [0, 4], '4-8h': [4, 8], '8-12h': [8, 12], '12-24h': [12, 24], '24-48h': [24, 48], '48-72h': [48, 72] };
  const CATEGORIES = [
    ['001', 'PS (professionnel de santé)'],
    ['002', 'Place de marché / plateforme'],
    ['003', 'SOS Médecins'],
  ];
  const PROFESSIONS = { '10': 'Médecin', '21': 'Pharmacien', '40': 'Chirurgien-dentiste', '50': 'Sage-femme', '60': 'Infirmier', '70': 'Masseur-kinésithérapeute', '80': 'Pédicure-podologue' };
  const SPECIALTIES = { SM54: 'médecine générale' };
  const MODALITIES = { AMB: 'Au cabinet', HH: 'Visite à domicile', VR: 'Téléconsultation' };
  const STRUCTURES = { CPTS: 'CPTS', MSP: 'Maison de santé', CDS: 'Centre de santé', SOS: 'SOS Médecins', OTHER: '' };

  const $ = (id) => document.getElementById(id);
  const dom = {};
  const state = {
    token: null,
    config: { tile_url: null, hold_ttl_s: 300 },
    communeChoices: new Map(), // datalist label → commune
    picked: null, // {lat, lon, label} chosen on the map
    lastQuery: null, // URLSearchParams of the last search
    results: [], // [{slot, item, marker}]
    hold: null, // {holdId, slotId, deadline, timer, entry}
    suggestTimer: null,
    suggestSeq: 0,
  };
  let map, territoryLayer, searchLayer;
  const territoryById = new Map();

  // ---------- small helpers ----------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') node.className = v;
      else if (k === 'text') node.textContent = v;
      else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }
  const fmtKm = (km) => `${km.toLocaleString('fr-FR', { maximumFractionDigits: km < 10 ? 1 : 0 })} km`;
  const dayKey = (d) => d.toLocaleDateString('fr-FR', { timeZone: TZ });
  function fmtStart(iso, endIso) {
    const d = new Date(iso);
    const time = d.toLocaleTimeString('fr-FR', { timeZone: TZ, hour: '2-digit', minute: '2-digit' });
    const now = new Date();
    const tomorrow = new Date(now.getTime() + 86400000);
    let day;
    if (dayKey(d) === dayKey(now)) day = "aujourd'hui";
    else if (dayKey(d) === dayKey(tomorrow)) day = 'demain';
    else day = d.toLocaleDateString('fr-FR', { timeZone: TZ, weekday: 'short', day: 'numeric', month: 'short' });
    let text = `${day} ${time}`;
    if (endIso) {
      const minutes = Math.round((new Date(endIso) - d) / 60000);
      if (minutes > 0) text += ` (${minutes} min)`;
    }
    return text;
  }
  function fmtAgo(iso) {
    if (!iso) return 'jamais';
    const minutes = Math.max(0, Math.round((Date.now() - new Date(iso)) / 60000));
    if (minutes < 1) return "à l'instant";
    if (minutes < 60) return `il y a ${minutes} min`;
    const hours = Math.round(minutes / 60);
    if (hours < 48) return `il y a ${hours} h`;
    return `le ${new Date(iso).toLocaleString('fr-FR', { timeZone: TZ, dateStyle: 'short', timeStyle: 'short' })}`;
  }
  const safeUrl = (u) => (typeof u === 'string' && /^https?:\/\//i.test(u) ? u : null);
  const telHref = (p) => (p ? `tel:${String(p).replace(/[^0-9+]/g, '')}` : null);
  // "+33240000001" → "02 40 00 00 01" (how a French operator reads and dials it).
  const fmtPhone = (p) => {
    const m = /^\+33(\d{9})$/.exec(String(p).replace(/[\s.]/g, ''));
    return m ? `0${m[1]}`.replace(/(\d\d)(?=\d)/g, '$1 ') : String(p);
  };

  function say(text, kind) {
    dom.status.classList.toggle('ok', kind === 'ok');
    dom.status.textContent = text || '';
    if (text) dom.alert.textContent = '';
  }
  function alertMsg(text) {
    dom.alert.textContent = text || '';
  }

  class ApiError extends Error {
    constructor(status, problem) {
      super((problem && (problem.detail || problem.title)) || `Erreur HTTP ${status}`);
      this.status = status;
      this.problem = problem || {};
      this.code = this.problem.code;
    }
  }

  async function api(path, { method = 'GET', body, auth = true } = {}) {
    const headers = { Accept: 'application/json' };
    if (auth && state.token) headers.Authorization = `Bearer ${state.token}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let res;
    try {
      res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (e) {
      throw new ApiError(0, { detail: 'Le serveur sasnp ne répond pas (réseau).' });
    }
    let data = null;
    const type = res.headers.get('content-type') || '';
    if (res.status !== 204 && type.includes('json')) {
      try { data = await res.json(); } catch (e) { data = null; }
    }
    if (!res.ok) {
      if (res.status === 401 && auth) {
        signOut('Jeton refusé ou révoqué : reconnectez-vous avec un jeton opérateur valide.');
      }
      throw new ApiError(res.status, data);
    }
    return { data, res };
  }

  // ---------- sign-in ----------
  function showSignedIn(signedIn) {
    dom.signin.hidden = signedIn;
    dom.searchForm.hidden = !signedIn;
    dom.session.hidden = !signedIn;
    if (!signedIn) {
      dom.results.hidden = true;
      clearResults();
    }
  }

  function signIn(event) {
    event.preventDefault();
    const token = dom.token.value.trim();
    if (!token) {
      alertMsg('Saisissez votre jeton opérateur.');
      dom.token.focus();
      return;
    }
    state.token = token;
    sessionStorage.setItem(TOKEN_KEY, token);
    dom.token.value = '';
    showSignedIn(true);
    say('Connecté. Saisissez une commune ou un code postal, ou cliquez sur la carte.');
    dom.where.focus();
  }

  function signOut(reason) {
    if (state.hold) releaseHold({ quiet: true });
    state.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    showSignedIn(false);
    if (reason) alertMsg(reason);
    else say('Déconnecté.');
    dom.token.focus();
  }

  // ---------- map ----------
  const TERRITORY_STYLE = { color: '#50749c', weight: 1, fillColor: '#dfe8f3', fillOpacity: 0.5 };
  const HOME_STYLE = { color: '#c25e00', weight: 3, fillColor: '#ffd28a', fillOpacity: 0.35 };

  function initMap() {
    map = L.map('map', { zoomControl: true, keyboard: true, preferCanvas: false }).setView([47.45, -0.9], 8);
    map.attributionControl.setPrefix('Leaflet');
    if (state.config.tile_url) {
      L.tileLayer(state.config.tile_url, { maxZoom: 18, attribution: state.config.tile_attribution || '' }).addTo(map);
    }
    map.attributionControl.addAttribution('Territoires : IGN, INSEE (Licence Ouverte)');
    territoryLayer = L.geoJSON(null, {
      style: () => TERRITORY_STYLE,
      onEachFeature: (feature, layer) => {
        territoryById.set(feature.properties.id, layer);
        layer.bindTooltip(el('span', { class: 'terr-tip', text: feature.properties.name }), { sticky: true });
      },
    }).addTo(map);
    map.createPane('patient').style.zIndex = 650; // above markers (600), below tooltips
    map.getPane('patient').style.pointerEvents = 'none';
    searchLayer = L.layerGroup().addTo(map);
    addLegend();
    map.on('click', (e) => pickPoint(e.latlng));
  }

  function addLegend() {
    const Legend = L.Control.extend({
      options: { position: 'bottomleft' },
      onAdd() {
        const box = el('div', { class: 'map-legend', role: 'note', 'aria-label': 'Légende de la carte' },
          el('div', {}, el('span', { class: 'sw sw-terr' }), 'Territoire CPTS'),
          el('div', {}, el('span', { class: 'sw sw-home' }), 'CPTS du patient'),
          el('div', {}, el('span', { class: 'sw sw-patient' }), 'Patient'),
          el('div', {}, el('span', { class: 'sw sw-radius' }), 'Rayon de recherche'),
          el('div', {}, el('span', { class: 'sw sw-slot' }), 'Créneau (n° de la liste)'));
        L.DomEvent.disableClickPropagation(box);
        return box;
      },
    });
    new Legend().addTo(map);
  }

  async function loadTerritories() {
    try {
      const { data } = await api('/v1/territories', { auth: false });
      territoryLayer.addData(data);
      const bounds = territoryLayer.getBounds();
      if (bounds.isValid()) map.fitBounds(bounds, { padding: [10, 10] });
      document.body.dataset.territories = String(data.features.length);
    } catch (e) {
      alertMsg(`Territoires CPTS indisponibles : ${e.message}`);
    }
  }

  function highlightTerritory(id) {
    territoryLayer.eachLayer((layer) => layer.setStyle(TERRITORY_STYLE));
    const home = id && territoryById.get(id);
    if (home) {
      home.setStyle(HOME_STYLE);
      home.bringToFront();
    }
  }

  async function pickPoint(latlng) {
    if (!state.token) {
      say('Connectez-vous pour rechercher autour d’un point.');
      return;
    }
    const lat = Number(latlng.lat.toFixed(5));
    const lon = Number(latlng.lng.toFixed(5));
    state.picked = { lat, lon, label: `${lat.toLocaleString('fr-FR')}, ${lon.toLocaleString('fr-FR')}` };
    dom.where.value = '';
    try {
      const { data } = await api(`/v1/territories/at?lat=${lat}&lon=${lon}`, { auth: false });
      state.picked.label = `${data.commune.name}${data.cpts ? ` — ${data.cpts.name}` : ''}`;
    } catch (e) {
      if (e.status === 404) {
        state.picked = null;
        dom.picked.hidden = true;
        alertMsg('Ce point est hors des Pays de la Loire : choisissez un point dans la région.');
        return;
      }
    }
    dom.pickedLabel.textContent = `Point choisi sur la carte : ${state.picked.label}`;
    dom.picked.hidden = false;
    search();
  }

  function clearPicked() {
    state.picked = null;
    dom.picked.hidden = true;
  }

  // ---------- commune suggestions ----------
  function suggest() {
    clearTimeout(state.suggestTimer);
    const q = dom.where.value.trim();
    if (q && state.picked) clearPicked();
    if (q.length < 2 || state.communeChoices.has(q)) return;
    state.suggestTimer = setTimeout(async () => {
      const seq = ++state.suggestSeq;
      try {
        const { data } = await api(`/v1/communes?q=${encodeURIComponent(q)}&limit=8`, { auth: false });
        if (seq !== state.suggestSeq) return;
        dom.whereList.replaceChildren();
        for (const c of data.communes) {
          const label = `${c.name} (${(c.postcodes && c.postcodes[0]) || c.department})`;
          state.communeChoices.set(label, c);
          dom.whereList.append(el('option', { value: label, label: `INSEE ${c.insee} · ${c.postcodes.join(', ')}` }));
        }
      } catch (e) { /* suggestions are a convenience */ }
    }, 180);
  }

  // ---------- search ----------
  function locationParams() {
    const text = dom.where.value.trim();
    if (!text && state.picked) return { lat: state.picked.lat, lon: state.picked.lon };
    if (!text) return null;
    const chosen = state.communeChoices.get(text);
    if (chosen) return { commune: chosen.insee };
    if (/^\d{5}$/.test(text)) return { postcode: text };
    if (/^\d[\dAB]\d{3}$/i.test(text)) return { commune: text.toUpperCase() };
    return { q: text };
  }

  function buildQuery(location) {
    const p = new URLSearchParams(location);
    const [profession, specialty] = dom.profession.value.split('|');
    if (profession) p.set('profession', profession);
    if (specialty) p.set('specialty', specialty);
    const modalities = [...document.querySelectorAll('input[name=modality]:checked')].map((i) => i.value);
    if (modalities.length) p.set('modality', modalities.join(','));
    const windows = [...document.querySelectorAll('input[name=window]:checked')].map((i) => i.value);
    if (windows.length === 1) p.set('window', windows[0]);
    else if (windows.length > 1) {
      // Several buckets: ask for their whole span, keep the chosen buckets below.
      const now = Date.now();
      const lo = Math.min(...windows.map((w) => BUCKETS[w][0]));
      const hi = Math.max(...windows.map((w) => BUCKETS[w][1]));
      p.set('from', new Date(now + lo * 3600000).toISOString());
      p.set('to', new Date(now + hi * 3600000).toISOString());
    }
    p.set('surnumeraire', dom.surnumeraire.value);
    p.set('order', dom.order.value);
    p.set('limit', '20'); // the radius grows (by the department's step) until this many are found
    return { params: p, windows };
  }

  function inBuckets(slot, windows) {
    if (windows.length < 2) return true;
    const hours = (new Date(slot.start) - Date.now()) / 3600000;
    return windows.some((w) => hours >= BUCKETS[w][0] && hours < BUCKETS[w][1]);
  }

  async function search(event) {
    if (event) event.preventDefault();
    const location = locationParams();
    if (!location) {
      alertMsg('Indiquez une commune ou un code postal, ou cliquez sur la carte.');
      dom.where.focus();
      return;
    }
    dom.candidates.hidden = true;
    const { params, windows } = buildQuery(location);
    state.lastQuery = { params, windows };
    dom.searchButton.disabled = true;
    say('Recherche en cours…');
    try {
      const { data } = await api(`/v1/search?${params}`);
      showResults(data, windows);
    } catch (e) {
      if (e.code === 'ambiguous_location' && Array.isArray(e.problem.candidates)) {
        showCandidates(e.problem.candidates);
      } else if (e.status !== 401) {
        alertMsg(`Recherche impossible : ${e.message}`);
      }
    } finally {
      dom.searchButton.disabled = false;
    }
  }

  function showCandidates(candidates) {
    dom.candidates.replaceChildren(el('p', { class: 'hint', text: 'Plusieurs communes correspondent : précisez.' }));
    for (const c of candidates) {
      const label = `${c.name} (${(c.postcodes || []).join(', ') || c.insee})`;
      dom.candidates.append(el('button', {
        type: 'button',
        onclick: () => {
          state.communeChoices.set(label, c);
          dom.where.value = label;
          search();
        },
      }, label));
    }
    dom.candidates.hidden = false;
    say('Plusieurs communes correspondent à la saisie : choisissez la bonne.');
    dom.candidates.querySelector('button')?.focus();
  }

  function clearResults() {
    if (state.hold) stopHoldTimer();
    state.hold = null;
    state.results = [];
    dom.resultList.replaceChildren();
    if (searchLayer) searchLayer.clearLayers();
  }

  function showResults(data, windows) {
    clearResults();
    const patient = data.patient;
    const slots = data.results.filter((s) => inBuckets(s, windows));
    highlightTerritory(patient.cpts && patient.cpts.id);

    const here = [patient.lat, patient.lon];
    const circle = L.circle(here, {
      radius: data.radius_km * 1000, color: '#c2185b', weight: 2, dashArray: '6 6', fill: false, interactive: false,
    }).addTo(searchLayer);
    // The patient: a dot, and a ring drawn above the slot markers so that a slot at the same
    // spot (a home visit placed at the commune) does not hide where the patient is.
    L.circleMarker(here, { radius: 7, color: '#fff', weight: 2, fillColor: '#c2185b', fillOpacity: 1 })
      .bindTooltip(el('span', { text: `Patient — ${patient.commune ? patient.commune.name : ''}` }))
      .addTo(searchLayer);
    L.circleMarker(here, { pane: 'patient', radius: 17, color: '#c2185b', weight: 4, fill: false, interactive: false })
      .addTo(searchLayer);

    const where = patient.commune ? `${patient.commune.name} (${patient.commune.insee})` : 'le point choisi';
    let summary = `${slots.length} créneau${slots.length > 1 ? 'x' : ''} dans un rayon de ${fmtKm(data.radius_km)} autour de ${where}`;
    if (patient.cpts) summary += ` — ${patient.cpts.name}`;
    if (data.enlargement_steps > 0) summary += ` (rayon élargi depuis ${fmtKm(data.base_radius_km)} pour trouver davantage de créneaux)`;
    summary += '.';
    dom.summary.textContent = summary;
    dom.results.hidden = false;

    slots.forEach((slot, i) => {
      const entry = { slot, n: i + 1 };
      entry.item = renderSlot(entry);
      dom.resultList.append(entry.item);
      state.results.push(entry);
    });
    placeMarkers();

    // Frame the slots and the patient (closer than the whole radius, so markers stay apart);
    // with no slot, the search radius.
    const bounds = state.results.length ? L.latLngBounds([here]) : circle.getBounds();
    for (const e of state.results) if (e.marker) bounds.extend(e.marker.getLatLng());
    map.fitBounds(bounds, { padding: [50, 50], maxZoom: 12 });
    say(slots.length ? summary : `Aucun créneau trouvé : ${summary}`);
    document.body.dataset.results = String(slots.length);
  }

  function describeWho(slot) {
    const parts = [];
    if (slot.practitioner) {
      const p = slot.practitioner;
      let prof = PROFESSIONS[p.profession] || p.profession || '';
      if (p.specialty) prof += prof ? ` — ${SPECIALTIES[p.specialty] || p.specialty}` : SPECIALTIES[p.specialty] || p.specialty;
      parts.push(p.name || 'Professionnel', prof ? ` · ${prof}` : '');
    }
    if (slot.structure) {
      const s = slot.structure;
      const code = String(s.kind || '').toUpperCase();
      const kind = code in STRUCTURES ? STRUCTURES[code] : code;
      parts.push(parts.length ? ' — ' : '', s.name || '', kind ? ` (${kind})` : '');
    }
    return parts.join('') || 'Professionnel non précisé';
  }

  function renderSlot(entry) {
    const { slot, n } = entry;
    const place = slot.place || {};
    const id = `slot-${n}`;
    const booking = [];
    const url = safeUrl(slot.booking_url);
    if (url) booking.push(el('a', { href: url, target: '_blank', rel: 'noopener noreferrer' }, 'Lien de réservation'));
    if (slot.booking_phone) {
      if (booking.length) booking.push(' · ');
      booking.push(el('a', { href: telHref(slot.booking_phone) }, `☎ ${fmtPhone(slot.booking_phone)}`));
    }
    const src = slot.source || {};
    const fresh = src.fresh
      ? el('span', { class: 'fresh', text: `Données à jour (${fmtAgo(src.last_success_at)})` })
      : el('span', { class: 'stale', text: `⚠ Données anciennes : dernière mise à jour ${fmtAgo(src.last_success_at)}` });

    const holdBtn = el('button', { type: 'button', class: 'hold-btn', 'aria-describedby': `${id}-when`, onclick: () => holdSlot(entry) }, 'Bloquer ce créneau');
    const li = el('li', { class: 'slot', id, 'data-slot-id': slot.slot_id, tabindex: '-1', 'aria-labelledby': `${id}-when ${id}-who` },
      el('span', { class: 'num', 'aria-hidden': 'true' }, String(n)),
      el('div', { class: 'line' },
        el('span', { class: 'dist', text: fmtKm(slot.distance_km) }),
        el('span', { class: 'when', id: `${id}-when` }, `n° ${n} · ${fmtStart(slot.start, slot.end)}`)),
      el('div', { class: 'line who', id: `${id}-who`, text: describeWho(slot) }),
      el('div', { class: 'line meta', text: [place.name, place.address, [place.postcode, place.city].filter(Boolean).join(' ')].filter(Boolean).join(', ') + (place.precision === 'commune' ? ' (position approximative : commune)' : '') }),
      el('div', { class: 'line meta' },
        el('span', { class: 'tag', text: MODALITIES[slot.modality] || slot.modality }),
        slot.surnumeraire ? el('span', { class: 'tag sup', text: 'Surnuméraire' }) : null,
        slot.cpts ? slot.cpts.name || slot.cpts.id : ''),
      booking.length ? el('div', { class: 'line' }, ...booking) : null,
      el('div', { class: 'line meta' }, fresh, src.name ? ` · source « ${src.name} »` : ''),
      el('div', { class: 'actions' }, holdBtn),
      el('div', { class: 'hold-area' }));
    entry.holdBtn = holdBtn;
    li.addEventListener('focusin', () => activate(entry, false));
    li.addEventListener('mouseenter', () => activate(entry, false));
    return li;
  }

  // One marker per place (a practice often offers several slots): it carries the list
  // numbers of its slots, so the map and the list read together.
  function placeMarkers() {
    const groups = new Map();
    for (const e of state.results) {
      const p = e.slot.place || {};
      const key = p.id != null ? `id:${p.id}` : `${p.lat},${p.lon}`;
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(e);
    }
    for (const entries of groups.values()) {
      const place = entries[0].slot.place || {};
      const nums = entries.map((e) => e.n);
      const label = nums.length <= 3 ? nums.join('·') : `${nums[0]}…${nums[nums.length - 1]}`;
      const width = 14 + 8 * label.length;
      const icon = L.divIcon({ className: 'slot-marker', html: label, iconSize: [width, 24], iconAnchor: [width / 2, 12] });
      const title = `${nums.length > 1 ? 'Créneaux' : 'Créneau'} n° ${nums.join(', ')} — ${place.name || place.city || ''} : `
        + entries.map((e) => fmtStart(e.slot.start)).join(', ');
      const marker = L.marker([place.lat, place.lon], { icon, keyboard: true, title, alt: title, riseOnHover: true }).addTo(searchLayer);
      marker.on('click', () => activate(entries[0], true));
      // Leaflet makes the marker focusable (role=button) but Enter only opens popups: do it here.
      marker.on('keypress', (e) => { if (e.originalEvent.key === 'Enter') activate(entries[0], true); });
      for (const e of entries) e.marker = marker;
    }
  }

  function activate(entry, fromMap) {
    for (const e of state.results) {
      e.item.classList.toggle('active', e === entry || (fromMap && e.marker === entry.marker));
      const icon = e.marker && e.marker.getElement();
      if (icon) icon.classList.toggle('active', e.marker === entry.marker);
      if (e.marker) e.marker.setZIndexOffset(e.marker === entry.marker ? 1000 : 0);
    }
    if (fromMap) {
      entry.item.scrollIntoView({ block: 'nearest', behavior: 'smooth' });
      entry.item.focus({ preventScroll: true });
    }
  }

  function setMarkerClass(entry, cls) {
    const icon = entry.marker && entry.marker.getElement();
    if (!icon) return;
    // A marker shared with other slots of the same place keeps its colour: they are still free.
    if (state.results.some((e) => e !== entry && e.marker === entry.marker)) return;
    icon.classList.remove('held', 'booked');
    if (cls) icon.classList.add(cls);
  }

  function setHoldButtons(enabled) {
    for (const e of state.results) if (e.holdBtn && !e.done) e.holdBtn.disabled = !enabled;
  }

  // ---------- hold / confirm / release ----------
  async function holdSlot(entry) {
    if (state.hold) {
      alertMsg('Un créneau est déjà bloqué : confirmez-le ou libérez-le d’abord.');
      return;
    }
    setHoldButtons(false);
    try {
      const { data, res } = await api(`/v1/slots/${encodeURIComponent(entry.slot.slot_id)}/hold`, { method: 'POST' });
      const serverNow = Date.parse(res.headers.get('date') || '') || Date.now();
      const ttl = Math.max(0, Date.parse(data.expires_at) - serverNow);
      state.hold = { holdId: data.hold_id, slotId: entry.slot.slot_id, deadline: Date.now() + ttl, entry };
      showHoldBox(entry);
      say(`Créneau n° ${entry.n} bloqué pour vous. Choisissez la catégorie d’orientation puis confirmez.`);
    } catch (e) {
      setHoldButtons(true);
      if (e.status === 409) markGone(entry, 'Ce créneau vient d’être pris par un autre opérateur. Choisissez-en un autre.');
      else if (e.status === 404) markGone(entry, 'Ce créneau n’existe plus (retiré par sa source). Choisissez-en un autre.');
      else if (e.status !== 401) alertMsg(`Blocage impossible : ${e.message}`);
    }
  }

  function showHoldBox(entry) {
    const id = `hold-${entry.n}`;
    const select = el('select', { id: `${id}-cat`, 'aria-required': 'true' },
      el('option', { value: '' }, '— Choisir —'),
      ...CATEGORIES.map(([code, label]) => el('option', { value: code }, `${code} · ${label}`)));
    const ref = el('input', {
      id: `${id}-ref`, type: 'text', autocomplete: 'off', spellcheck: 'false', maxlength: '64',
      'aria-describedby': `${id}-ref-hint`,
    });
    const countdown = el('span', { class: 'countdown', id: `${id}-countdown`, role: 'timer', 'aria-live': 'off' });
    const confirmBtn = el('button', { type: 'submit', class: 'confirm' }, 'Confirmer le rendez-vous');
    const releaseBtn = el('button', { type: 'button', class: 'danger', onclick: () => releaseHold({}) }, 'Libérer');
    const form = el('form', { class: 'hold-box', 'aria-label': `Créneau n° ${entry.n} bloqué` },
      el('div', {}, 'Bloqué pour vous — ', countdown, ' restantes'),
      el('label', { for: select.id }, 'Catégorie d’orientation'), select,
      el('label', { for: ref.id }, 'Référence patient (facultatif)'), ref,
      el('p', { class: 'hint', id: `${id}-ref-hint` }, 'Référence pseudonyme du dossier de régulation (4 à 64 caractères, dont un chiffre) : jamais de nom ni de NIR.'),
      el('div', { class: 'actions' }, confirmBtn, releaseBtn));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      confirmHold(select, ref.value.trim());
    });
    entry.item.classList.add('held');
    setMarkerClass(entry, 'held');
    entry.holdBtn.hidden = true;
    entry.item.querySelector('.hold-area').replaceChildren(form);
    tick();
    state.hold.timer = setInterval(tick, 1000);
    select.focus();
  }

  function tick() {
    const h = state.hold;
    if (!h) return;
    const left = Math.max(0, Math.round((h.deadline - Date.now()) / 1000));
    const node = h.entry.item.querySelector('.countdown');
    if (node) node.textContent = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, '0')}`;
    if (left === 60) say('Plus qu’une minute avant la fin du blocage du créneau.');
    if (left <= 0) {
      const entry = h.entry;
      endHold();
      alertMsg(`Le blocage du créneau n° ${entry.n} a expiré : il est de nouveau proposé aux autres opérateurs. Bloquez-le à nouveau si besoin.`);
    }
  }

  function stopHoldTimer() {
    if (state.hold && state.hold.timer) clearInterval(state.hold.timer);
  }

  function endHold() {
    const h = state.hold;
    if (!h) return;
    stopHoldTimer();
    state.hold = null;
    h.entry.item.classList.remove('held');
    setMarkerClass(h.entry, null);
    h.entry.item.querySelector('.hold-area').replaceChildren();
    h.entry.holdBtn.hidden = false;
    setHoldButtons(true);
    h.entry.holdBtn.focus();
  }

  async function releaseHold({ quiet }) {
    const h = state.hold;
    if (!h) return;
    if (quiet) {
      stopHoldTimer();
      state.hold = null;
      fetch(`/v1/holds/${encodeURIComponent(h.holdId)}`, { method: 'DELETE', keepalive: true, headers: { Authorization: `Bearer ${state.token}` } }).catch(() => {});
      return;
    }
    try {
      await api(`/v1/holds/${encodeURIComponent(h.holdId)}`, { method: 'DELETE' });
      endHold();
      say(`Créneau n° ${h.entry.n} libéré.`);
    } catch (e) {
      if (e.status === 404 || e.status === 409 || e.status === 410) {
        endHold();
        say(`Créneau n° ${h.entry.n} libéré (le blocage avait déjà pris fin).`);
      } else if (e.status !== 401) alertMsg(`Libération impossible : ${e.message}`);
    }
  }

  async function confirmHold(select, patientRef) {
    const h = state.hold;
    if (!h) return;
    if (!select.value) {
      alertMsg('Choisissez la catégorie d’orientation (001, 002 ou 003) avant de confirmer.');
      select.focus();
      return;
    }
    const body = { orientation_category: select.value };
    if (patientRef) body.patient_ref = patientRef;
    try {
      const { data } = await api(`/v1/holds/${encodeURIComponent(h.holdId)}/confirm`, { method: 'POST', body });
      stopHoldTimer();
      state.hold = null;
      const entry = h.entry;
      entry.done = true;
      entry.item.classList.remove('held');
      entry.item.classList.add('booked');
      setMarkerClass(entry, 'booked');
      entry.holdBtn.remove();
      const cat = CATEGORIES.find(([c]) => c === body.orientation_category);
      entry.item.querySelector('.hold-area').replaceChildren(
        el('p', { class: 'outcome', text: `✓ Rendez-vous enregistré (n° ${data.appointment_id}) — orientation ${cat[0]} · ${cat[1]}.` }));
      setHoldButtons(true);
      say(`Rendez-vous confirmé pour le créneau n° ${entry.n} (${fmtStart(entry.slot.start)}).`, 'ok');
      entry.item.focus();
    } catch (e) {
      if (e.status === 409 || e.status === 404 || e.status === 410) {
        const entry = h.entry;
        endHold();
        markGone(entry, `Confirmation impossible : ${e.message} Le créneau a été repris ; choisissez-en un autre.`);
      } else if (e.status !== 401) alertMsg(`Confirmation impossible : ${e.message}`);
    }
  }

  function markGone(entry, message) {
    entry.done = true;
    entry.item.classList.add('gone');
    entry.holdBtn.remove();
    entry.item.querySelector('.hold-area').replaceChildren(el('p', { class: 'outcome', text: 'Indisponible : pris par un autre opérateur.' }));
    const marker = entry.marker;
    entry.marker = null;
    if (marker && !state.results.some((e) => e.marker === marker && !e.done)) searchLayer.removeLayer(marker);
    alertMsg(message);
  }

  // ---------- start ----------
  async function loadConfig() {
    try {
      const { data } = await api('/ui/config.json', { auth: false });
      Object.assign(state.config, data);
    } catch (e) { /* defaults: no base map */ }
  }

  async function start() {
    for (const id of ['status', 'alert', 'signin', 'token', 'session', 'results', 'summary', 'where', 'candidates', 'profession', 'order', 'surnumeraire', 'picked']) dom[id] = $(id);
    dom.searchForm = $('search-form');
    dom.whereList = $('where-list');
    dom.resultList = $('result-list');
    dom.pickedLabel = $('picked-label');
    dom.searchButton = $('search-button');

    $('signin-form').addEventListener('submit', signIn);
    $('signout').addEventListener('click', () => signOut());
    dom.searchForm.addEventListener('submit', search);
    dom.where.addEventListener('input', suggest);
    $('picked-clear').addEventListener('click', clearPicked);
    window.addEventListener('pagehide', () => releaseHold({ quiet: true }));

    state.token = sessionStorage.getItem(TOKEN_KEY);
    showSignedIn(Boolean(state.token));
    await loadConfig();
    initMap();
    await loadTerritories();
    document.body.dataset.ready = 'true';
  }

  document.addEventListener('DOMContentLoaded', start);
})();
