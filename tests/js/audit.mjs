// Runs graphql-http's GraphQL-over-HTTP audits against a server and prints each result as
// JSON: node audit.mjs <url> <apiKey>
import { auditServer } from "graphql-http";

const [url, key] = process.argv.slice(2);
const fetchFn = (input, init = {}) =>
  fetch(input, { ...init, headers: { ...init.headers, authorization: `Bearer ${key}` } });
const results = await auditServer({ url, fetchFn });
const report = results.map(({ id, name, status, reason }) => ({ id, name, status, reason }));
process.stdout.write(JSON.stringify(report));
