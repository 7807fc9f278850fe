// Create expenses, then follow their sync batch live with graphql-ws: no polling.
//
//   cd examples && npm install && \
//   node follow-batch.mjs --url http://127.0.0.1:8000 --key s2b_... --company-id cmp_...
//
// Each status transition arrives the moment the worker makes it; the subscription completes
// when the batch does.
import { parseArgs } from "node:util";
import { createClient } from "graphql-ws";
import WebSocket from "ws";

const { values: args } = parseArgs({
  options: {
    url: { type: "string", default: "http://127.0.0.1:8000" },
    key: { type: "string" },
    "company-id": { type: "string" },
  },
});
const authorization = `Bearer ${args.key}`;

async function graphql(query, variables) {
  const response = await fetch(`${args.url}/graphql`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: authorization },
    body: JSON.stringify({ query, variables }),
  });
  const body = await response.json();
  if (body.errors) throw new Error(JSON.stringify(body.errors));
  return body.data;
}

const created = await graphql(
  `mutation Create($companyId: ID!, $expenses: [ExpenseInput!]!) {
     createExpenses(companyId: $companyId, expenses: $expenses) { syncBatchId }
   }`,
  {
    companyId: args["company-id"],
    expenses: [
      { amount: "42.00", currency: "USD", date: "2026-11-02", accountId: "429", vendorName: "Cafe Uno" },
      { amount: "18.90", currency: "USD", date: "2026-11-03", accountId: "453", vendorName: "Paper Co" },
    ],
  },
);
const batchId = created.createExpenses.syncBatchId;
console.log(`batch ${batchId} queued`);

const client = createClient({
  url: `${args.url.replace(/^http/, "ws")}/graphql`,
  webSocketImpl: WebSocket,
  connectionParams: { Authorization: authorization }, // the key travels in connection_init
});
const events = client.iterate({
  query: `subscription Follow($batchId: ID!) {
    syncBatchEvents(batchId: $batchId) { eventId itemId fromStatus toStatus error { code hint } }
  }`,
  variables: { batchId },
});
for await (const result of events) {
  console.log(JSON.stringify(result.data.syncBatchEvents)); // ends after the batch's last event
}
await client.dispose();

const { syncBatch: batch } = await graphql(
  `query Summary($id: ID!) { syncBatch(id: $id) { status successCount failedCount } }`,
  { id: batchId },
);
console.log(`batch ${batch.status}: ${batch.successCount} synced, ${batch.failedCount} failed`);
