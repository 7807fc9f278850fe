// Sends one file as apollo-upload-client sends a reused File: one multipart part, mapped to
// every place the file stands in the variables. Prints both mutations' results as JSON:
// node upload.mjs <url> <apiKey> <itemId> <companyId> <file>
import { readFile } from "node:fs/promises";
import { ApolloClient, InMemoryCache, gql } from "@apollo/client/core/index.js";
import createUploadLink from "apollo-upload-client/createUploadLink.mjs";

const [uri, key, itemId, companyId, path] = process.argv.slice(2);
const file = new File([await readFile(path)], "receipt.pdf", { type: "application/pdf" });
const client = new ApolloClient({
  link: createUploadLink({ uri, headers: { authorization: `Bearer ${key}` } }),
  cache: new InMemoryCache(),
  defaultOptions: { mutate: { fetchPolicy: "no-cache" } },
});
const expense = {
  amount: "12.50",
  currency: "USD",
  date: "2026-01-15",
  accountId: "429",
  vendorName: "Cafe Uno",
};

const attached = await client.mutate({
  mutation: gql`
    mutation ($item: ID!, $files: [Upload!]!) {
      attachFiles(itemId: $item, files: $files) { id size sha256 }
    }
  `,
  variables: { item: itemId, files: [file, file, file] },
});
const created = await client.mutate({
  mutation: gql`
    mutation ($companyId: ID!, $expenses: [ExpenseInput!]!) {
      createExpenses(companyId: $companyId, expenses: $expenses) { syncBatchId expenses { id } }
    }
  `,
  variables: {
    companyId,
    expenses: [
      { ...expense, attachments: [file] },
      { ...expense, attachments: [file] },
    ],
  },
});
process.stdout.write(JSON.stringify({ attached: attached.data, created: created.data }));
