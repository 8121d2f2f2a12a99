// Loads the end-to-end fixture into a running sasnp: one CSV source of the CPTS of Nantes with
// slots in Nantes (44000) and Saint-Herblain (44800) over the next hours (the server runs on the
// wall clock, so start times are relative to now, written in Europe/Paris local time as CPTS
// spreadsheets do). Writes what the page should then show to the file named by argv[2].
//
// usage: E2E_URL=http://127.0.0.1:PORT ADMIN_TOKEN=… node seed.mjs expected.json
import { writeFileSync } from 'node:fs';

const base = process.env.E2E_URL;
const admin = process.env.ADMIN_TOKEN;
const out = process.argv[2];
if (!base || !admin || !out) throw new Error('usage: E2E_URL=… ADMIN_TOKEN=… node seed.mjs OUT.json');

async function call(method, path, { body, type = 'application/json', token = admin } = {}) {
  const res = await fetch(base + path, {
    method,
    headers: { Authorization: `Bearer ${token}`, ...(body ? { 'Content-Type': type } : {}) },
    body: body && type === 'application/json' ? JSON.stringify(body) : body,
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path} → ${res.status}: ${text}`);
  return text ? JSON.parse(text) : null;
}

// Europe/Paris wall time "YYYY-MM-DD HH:MM" of an instant ('sv-SE' formats as ISO-like).
const paris = (d) => new Intl.DateTimeFormat('sv-SE', {
  timeZone: 'Europe/Paris', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', hourCycle: 'h23',
}).format(d).replace('T', ' ');
const parisHHMM = (d) => paris(d).slice(11, 16);

// Slot starts on a 5-minute grid, at least 40 minutes ahead.
const t0 = Math.ceil((Date.now() + 40 * 60000) / 300000) * 300000;
const at = (minutes) => new Date(t0 + minutes * 60000);

const GRASLIN = ['Cabinet médical Graslin', '4 rue Racine', '44000', 'Nantes', '47,2133', '-1,5626'];
const MALAKOFF = ['MSP Malakoff', '12 boulevard de Berlin', '44000', 'Nantes', '47,2128', '-1,5297'];
const HERBLAIN = ['Cabinet du Bourg', '3 place de la Mairie', '44800', 'Saint-Herblain', '47,2122', '-1,6497'];
const HOME = ['Visites à domicile Nantes', '', '44000', 'Nantes', '', ''];

const DR_MOREAU = ['10101010101', 'Dr Claire Moreau', '10', 'SM54'];
const DR_NGUYEN = ['10202020202', 'Dr Paul Nguyen', '10', 'SM54'];
const DR_GARNIER = ['10303030303', 'Dr Julien Garnier', '10', 'SM54'];
const IDE_LEROUX = ['10404040404', 'Anne Leroux', '60', ''];

// [id, minutes from t0, duration, status, practitioner, place, modality, url, phone, surnuméraire, structure]
const rows = [
  ['E2E-01', 0, 20, 'free', DR_MOREAU, GRASLIN, 'AMB', 'https://rdv.example.org/moreau/1', '02 40 00 00 01', 'non'],
  ['E2E-02', 60, 20, 'free', DR_MOREAU, GRASLIN, 'AMB', 'https://rdv.example.org/moreau/2', '', 'non'],
  ['E2E-03', 180, 20, 'free', DR_MOREAU, GRASLIN, 'AMB', '', '02 40 00 00 01', 'non'],
  ['E2E-04', 30, 15, 'free', DR_NGUYEN, MALAKOFF, 'AMB', '', '02 40 00 00 02', 'oui', ['MSP', '440000001', 'MSP Malakoff']],
  ['E2E-05', 120, 15, 'free', DR_NGUYEN, MALAKOFF, 'AMB', '', '02 40 00 00 02', 'non', ['MSP', '440000001', 'MSP Malakoff']],
  ['E2E-06', 15, 20, 'free', DR_GARNIER, HERBLAIN, 'AMB', 'https://rdv.example.org/garnier/6', '', 'non'],
  ['E2E-07', 90, 20, 'free', DR_GARNIER, HERBLAIN, 'AMB', 'https://rdv.example.org/garnier/7', '', 'non'],
  ['E2E-08', 240, 20, 'free', DR_GARNIER, HERBLAIN, 'VR', 'https://rdv.example.org/garnier/8', '', 'non'],
  ['E2E-09', 150, 30, 'free', DR_MOREAU, HOME, 'HH', '', '02 40 00 00 01', 'non'],
  // Not for a GP search: a nurse, and a slot already taken at the publisher.
  ['E2E-10', 45, 15, 'free', IDE_LEROUX, GRASLIN, 'AMB', '', '02 40 00 00 03', 'non'],
  ['E2E-11', 75, 20, 'busy', DR_MOREAU, GRASLIN, 'AMB', '', '', 'non'],
];

const header = 'slot_id;start;end;status;practitioner_rpps;practitioner_name;profession;specialty;place_name;address;postcode;city;lat;lon;modality;booking_url;booking_phone;surnumeraire;structure_type;structure_id;structure_name';
const csv = [header, ...rows.map(([id, m, dur, status, pr, place, modality, url, phone, sup, st = ['', '', '']]) =>
  [id, paris(at(m)), paris(at(m + dur)), status, ...pr, ...place, modality, url, phone, sup, ...st].join(';'))].join('\r\n') + '\r\n';

const here = await (await fetch(`${base}/v1/territories/at?lat=47.2184&lon=-1.5536`)).json();
if (!here.cpts) throw new Error(`no CPTS at Nantes: ${JSON.stringify(here)}`);
const source = await call('POST', '/v1/sources', { body: { name: 'E2E — agenda SNP CPTS', cpts: here.cpts.id, format: 'csv' } });
const report = await call('PUT', `/v1/sources/${source.id}/slots`, { body: csv, type: 'text/csv; charset=utf-8' });
console.log(`seeded source ${source.id} (${here.cpts.name}): ${JSON.stringify(report).slice(0, 400)}`);

const gp = rows.filter((r) => r[3] === 'free' && r[4][2] === '10');
writeFileSync(out, JSON.stringify({
  cpts: here.cpts,
  sourceId: source.id,
  // What a search for a GP around 44000 (all modalities, 72 h) must list: id → local start time.
  gpSlots: Object.fromEntries(gp.map((r) => [r[0], parisHHMM(at(r[1]))])),
  excluded: rows.filter((r) => !gp.includes(r)).map((r) => r[0]),
}, null, 2));
