// Typed documents from the service's committed SDL, and their manifest of trusted documents:
// `npm run codegen` after either changes.
import type { CodegenConfig } from "@graphql-codegen/cli";

const config: CodegenConfig = {
  schema: "../../schema.graphql",
  documents: ["src/**/*.ts", "!src/gql/**/*"],
  ignoreNoDocuments: false,
  generates: {
    "src/gql/": {
      preset: "client",
      // src/gql/persisted-documents.json: every document by its SHA-256, for the service's
      // TRUSTED_DOCUMENTS_MANIFEST; each document carries its hash, which requests send.
      presetConfig: { persistedDocuments: { hashAlgorithm: "sha256" } },
      config: {
        // Our scalars travel as strings: ISO 8601 dates and times, decimal amounts.
        scalars: { Date: "string", DateTime: "string", Decimal: "string" },
        enumsAsTypes: true,
        useTypeImports: true,
      },
    },
  },
};

export default config;
