// Follows a subscription over plain HTTP as a frontend would, with the client libraries
// users bring: `sse` through the graphql-sse package (its distinct-connections mode), and
// `multipart` through Apollo Client's HttpLink (Apollo's multipart subscriptions). Prints
// each result as a JSON line, and "complete" when the server ends the stream:
// node subscribe-http.mjs <sse|multipart> <url> <apiKey> <query> <variables JSON>
import { ApolloClient, HttpLink, InMemoryCache, gql } from "@apollo/client/core/index.js";
import { createClient } from "graphql-sse";

const [protocol, url, key, query, variables] = process.argv.slice(2);
const headers = { Authorization: `Bearer ${key}` };
const print = (result) => console.log(JSON.stringify(result));

if (protocol === "sse") {
  const client = createClient({ url, headers, retryAttempts: 0 });
  for await (const result of client.iterate({ query, variables: JSON.parse(variables) })) {
    print(result);
  }
  client.dispose();
} else {
  const client = new ApolloClient({ link: new HttpLink({ uri: url, headers }), cache: new InMemoryCache() });
  await new Promise((resolve, reject) => {
    client
      .subscribe({ query: gql(query), variables: JSON.parse(variables), fetchPolicy: "no-cache" })
      .subscribe({ next: print, error: reject, complete: resolve });
  });
}
console.log("complete");
