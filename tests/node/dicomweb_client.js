// OHIF's own DICOMweb library (npm dicomweb-client) against a server: the calls a viewer makes.
// usage: node dicomweb_client.js URL STUDY SERIES INSTANCE FILE_TO_STORE RESULTS.json
// RESULTS.json: {studies, series, metadata, frame (base64), rendered (base64), stored} or {error}.
'use strict';
global.XMLHttpRequest = require('xhr2'); // (the library speaks XMLHttpRequest, as in a browser)
const fs = require('fs');
const { api } = require('dicomweb-client');

async function main() {
  const [url, study, series, instance, toStore, results] = process.argv.slice(2);
  const client = new api.DICOMwebClient({ url });
  const out = {};
  try {
    out.studies = await client.searchForStudies();
    out.series = await client.searchForSeries({ studyInstanceUID: study });
    out.metadata = await client.retrieveSeriesMetadata({ studyInstanceUID: study, seriesInstanceUID: series });
    const frames = await client.retrieveInstanceFrames({
      studyInstanceUID: study, seriesInstanceUID: series, sopInstanceUID: instance, frameNumbers: [1],
    });
    out.frame = Buffer.from(frames[0]).toString('base64');
    const rendered = await client.retrieveInstanceRendered({
      studyInstanceUID: study, seriesInstanceUID: series, sopInstanceUID: instance,
      mediaTypes: [{ mediaType: 'image/png' }],
    });
    // (some versions hand the picture inside an array)
    out.rendered = Buffer.from(Array.isArray(rendered) ? rendered[0] : rendered).toString('base64');
    const bytes = fs.readFileSync(toStore);
    const stored = await client.storeInstances({
      datasets: [bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)],
    });
    out.stored = stored === undefined ? null : String(stored).slice(0, 200);
  } catch (error) {
    out.error = String((error && (error.message || error.status)) || error);
  }
  fs.writeFileSync(results, JSON.stringify(out));
}

main();
