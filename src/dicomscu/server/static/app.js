// The study browser of `dicomscu serve --http`: only the DICOMweb endpoints of the same server (QIDO-RS,
// /thumbnail, /rendered), nothing from elsewhere. Values are put in the page as text, never as HTML.
'use strict';
const ROOT = 'dicom-web';

function headers(accept) {
  const result = { Accept: accept };
  const token = sessionStorage.getItem('dicomscu-token');
  if (token) result.Authorization = 'Bearer ' + token;
  return result;
}

async function search(path) {
  const response = await fetch(`${ROOT}${path}`, { headers: headers('application/dicom+json') });
  if (response.status === 204) return [];
  if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
  return response.json();
}

async function picture(path, element) {
  const response = await fetch(`${ROOT}${path}`, { headers: headers('image/png') });
  if (!response.ok) return;
  element.src = URL.createObjectURL(await response.blob());
}

function value(item, tag) {
  const values = (item[tag] || {}).Value || [];
  const first = values[0];
  if (first && typeof first === 'object') return first.Alphabetic || '';
  return values.join(', ');
}

function cell(row, text) {
  const td = document.createElement('td');
  td.textContent = text;
  row.appendChild(td);
}

function say(text) {
  document.getElementById('status').textContent = text;
}

async function listStudies() {
  const patient = document.getElementById('patient').value.trim();
  const query = new URLSearchParams({ includefield: 'StudyDescription', limit: '200' });
  if (patient) query.set(/^[0-9A-Za-z._-]+$/.test(patient) && !/[*?]/.test(patient) ? 'PatientID' : 'PatientName', patient);
  say('Searching…');
  let studies;
  try {
    studies = await search(`/studies?${query}`);
  } catch (error) {
    say(`The search failed: ${error.message}`);
    return;
  }
  const body = document.querySelector('#studies tbody');
  body.replaceChildren();
  for (const study of studies) {
    const row = document.createElement('tr');
    row.dataset.study = value(study, '0020000D');
    for (const tag of ['00100010', '00100020', '00080020', '00081030', '00080061', '00201206', '00201208']) {
      cell(row, value(study, tag));
    }
    row.addEventListener('click', () => openStudy(row.dataset.study, value(study, '00100010')));
    body.appendChild(row);
  }
  document.getElementById('studies').hidden = studies.length === 0;
  say(studies.length ? `${studies.length} stud${studies.length === 1 ? 'y' : 'ies'}` : 'No study found.');
}

async function openStudy(study, patient) {
  document.getElementById('study').hidden = false;
  document.getElementById('viewer').hidden = true;
  document.getElementById('study-title').textContent = `${patient} — ${study}`;
  const box = document.getElementById('series');
  box.replaceChildren();
  for (const series of await search(`/studies/${study}/series`)) {
    const uid = value(series, '0020000E');
    const card = document.createElement('div');
    card.className = 'series';
    const img = document.createElement('img');
    img.alt = `series ${value(series, '00200011')}`;
    picture(`/studies/${study}/series/${uid}/thumbnail`, img);
    const label = document.createElement('div');
    label.textContent = `${value(series, '00080060')} ${value(series, '00200011')} ${value(series, '0008103E')}`;
    card.append(img, label);
    card.addEventListener('click', () => openSeries(study, uid));
    box.appendChild(card);
  }
}

async function openSeries(study, series) {
  const instances = await search(`/studies/${study}/series/${series}/instances`);
  if (!instances.length) return;
  const first = instances.sort((a, b) => Number(value(a, '00200013')) - Number(value(b, '00200013')))[0];
  const uid = value(first, '00080018');
  document.getElementById('viewer').hidden = false;
  document.getElementById('caption').textContent = `instance ${value(first, '00200013')} of ${instances.length}`;
  await picture(`/studies/${study}/series/${series}/instances/${uid}/rendered`, document.getElementById('picture'));
}

document.addEventListener('DOMContentLoaded', () => {
  const token = document.getElementById('token');
  token.value = sessionStorage.getItem('dicomscu-token') || '';
  document.getElementById('search').addEventListener('submit', (event) => {
    event.preventDefault();
    if (token.value) sessionStorage.setItem('dicomscu-token', token.value);
    else sessionStorage.removeItem('dicomscu-token');
    listStudies();
  });
  listStudies().then(() => {  // #study=UID&series=UID opens them (a link to share, and what the tests use)
    const wanted = new URLSearchParams(location.hash.slice(1));
    if (wanted.get('study')) {
      openStudy(wanted.get('study'), '').then(() => {
        if (wanted.get('series')) openSeries(wanted.get('study'), wanted.get('series'));
      });
    }
  });
});
