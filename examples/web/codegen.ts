// Typed documents from the service's committed SDL: `npm run codegen` after it changes.
import type { CodegenConfig } from "@graphql-codegen/cli";

const config: CodegenConfig = {
  schema: "../../schema.graphql",
  documents: ["src/**/*.ts", "!src/gql/**/*"],
  ignoreNoDocuments: false,
  generates: {
    "src/gql/": {
      preset: "client",
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
