// Prints graphql-js's standard introspection query with every option on, as codegen,
// Apollo tooling and IDE plugins send it.
import { getIntrospectionQuery } from "graphql";

process.stdout.write(
  getIntrospectionQuery({
    descriptions: true,
    specifiedByUrl: true,
    directiveIsRepeatable: true,
    schemaDescription: true,
    inputValueDeprecation: true,
    oneOf: true,
  }),
);
