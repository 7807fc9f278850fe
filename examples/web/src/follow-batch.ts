// A typed frontend client: create expenses, then follow their sync batch live.
//
//   cd examples/web && npm ci && npm run codegen && \
//   npm start -- --url http://127.0.0.1:8000 --key s2b_... --company-id cmp_...
//
// Every document is written with `graphql()` from the generated `./gql`: its variables and its
// result are typed from schema.graphql, so a renamed field or a wrong variable fails
// `npm run typecheck`, not a user's screen.
import { parseArgs } from "node:util";
import type { ResultOf, TypedDocumentNode } from "@graphql-typed-document-node/core";
import { type DocumentNode, print } from "graphql";
import { createClient } from "graphql-ws";
import WebSocket from "ws";
import { graphql } from "./gql";
import manifest from "./gql/persisted-documents.json" with { type: "json" };
import type { ExpenseInput } from "./gql/graphql";

const { values: args } = parseArgs({
  options: {
    url: { type: "string", default: "http://127.0.0.1:8000" },
    key: { type: "string" },
    "company-id": { type: "string" },
  },
});
if (!args.key || !args["company-id"]) throw new Error("pass --key and --company-id");
const authorization = `Bearer ${args.key}`;

const CreateExpenses = graphql(`
  mutation CreateExpenses($companyId: ID!, $expenses: [ExpenseInput!]!) {
    createExpenses(companyId: $companyId, expenses: $expenses) { syncBatchId }
  }
`);

const FollowBatch = graphql(`
  subscription FollowBatch($batchId: ID!) {
    syncBatchEvents(batchId: $batchId) {
      eventId itemId fromStatus toStatus occurredAt error { code message hint retryable }
    }
  }
`);

const BatchSummary = graphql(`
  query BatchSummary($id: ID!) {
    syncBatch(id: $id) { status successCount failedCount }
  }
`);

/** A document's text as the manifest lists it, which a TRUSTED_DOCUMENTS=only service runs. */
function trustedText(document: DocumentNode & { __meta__?: { hash?: string } }): string {
  const hash = document.__meta__?.hash;
  return (hash && (manifest as Record<string, string>)[hash]) || print(document);
}

/** One operation over HTTP, as the GraphQL-over-HTTP spec has it; typed by its document.
 * It names the document by its hash (codegen's `persistedDocuments`), so a service with
 * `TRUSTED_DOCUMENTS=only` and this build's manifest runs it, and no other document. */
async function request<Result, Variables>(
  document: TypedDocumentNode<Result, Variables> & { __meta__?: { hash?: string } },
  variables: Variables,
): Promise<Result> {
  const hash = document.__meta__?.hash; // "sha256:…"
  const named = hash ? { documentId: hash } : { query: print(document) };
  const response = await fetch(`${args.url}/graphql`, {
    method: "POST",
    headers: {
      "Content-Type": "application/json",
      Accept: "application/graphql-response+json, application/json;q=0.9",
      Authorization: authorization,
    },
    body: JSON.stringify({ ...named, variables }),
  });
  const body = (await response.json()) as { data?: Result; errors?: unknown[] };
  if (body.errors || body.data === undefined) throw new Error(JSON.stringify(body.errors));
  return body.data;
}

const expenses: ExpenseInput[] = [
  { amount: "42.00", currency: "USD", date: "2026-11-02", accountId: "429", vendorName: "Cafe Uno" },
  { amount: "18.90", currency: "USD", date: "2026-11-03", accountId: "453", vendorName: "Paper Co" },
];
const created = await request(CreateExpenses, { companyId: args["company-id"], expenses });
const batchId = created.createExpenses.syncBatchId;
console.log(`batch ${batchId} queued`);

const client = createClient({
  url: `${args.url.replace(/^http/, "ws")}/graphql`,
  webSocketImpl: WebSocket,
  connectionParams: { Authorization: authorization }, // the key travels in connection_init
});
const events = client.iterate<ResultOf<typeof FollowBatch>>({
  query: trustedText(FollowBatch), // graphql-ws sends a document's text: the manifest's
  variables: { batchId },
});
for await (const result of events) {
  if (result.errors || !result.data) throw new Error(JSON.stringify(result.errors));
  const event = result.data.syncBatchEvents; // typed: toStatus is "PENDING" | "PROCESSING" | …
  if (event.error) console.error(`item ${event.itemId}: ${event.error.code}. ${event.error.hint}`);
  console.log(JSON.stringify(event)); // the stream ends after the batch's terminal event
}
await client.dispose();

const { syncBatch: batch } = await request(BatchSummary, { id: batchId });
if (!batch) throw new Error(`batch ${batchId} not found`);
console.log(`batch ${batch.status}: ${batch.successCount} synced, ${batch.failedCount} failed`);
