// Store files with dcmjs-dimse (a third DIMSE implementation, Node): one association per file, so that
// the files dcmjs-dimse itself cannot encode (it ends its association on the first one) cost only
// themselves; each file's own transfer syntax is proposed, with dcmjs-codecs' transcoding on.
// usage: node dimse_store.js RESULTS.jsonl HOST PORT CALLED_AE FILE...
// RESULTS.jsonl gets one line per file: {"file", "status", "error"} (status null: no response came).
'use strict';
const fs = require('fs');
const dcmjsDimse = require('dcmjs-dimse');
const { Client } = dcmjsDimse;
const { CStoreRequest } = dcmjsDimse.requests;

function storeOne(host, port, calledAe, file) {
  return new Promise((resolve) => {
    const outcome = { file, status: null, error: null };
    let request;
    try {
      request = new CStoreRequest(file);
    } catch (error) {
      outcome.error = String((error && error.message) || error);
      resolve(outcome);
      return;
    }
    const client = new Client();
    request.on('response', (response) => {
      outcome.status = response.getStatus();
    });
    client.addRequest(request);
    client.on('networkError', (error) => {
      outcome.error = outcome.error || String((error && error.message) || error);
    });
    client.on('associationRejected', (result) => {
      outcome.error = `association rejected: ${JSON.stringify(result)}`;
    });
    client.on('closed', () => resolve(outcome));
    client.send(host, Number(port), 'DCMJSSCU', calledAe);
  });
}

async function main() {
  const [results, host, port, calledAe, ...files] = process.argv.slice(2);
  await dcmjsDimse.Transcoding.initializeAsync();
  const lines = [];
  for (const file of files) {
    lines.push(JSON.stringify(await storeOne(host, port, calledAe, file)));
  }
  fs.writeFileSync(results, lines.join('\n') + '\n');
}

main().catch((error) => {
  process.stderr.write(`dimse_store: ${error}\n`);
  process.exit(1);
});
