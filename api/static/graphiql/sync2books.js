// GraphiQL for Sync2Books: queries and mutations over HTTP, subscriptions over
// graphql-transport-ws, both authorised by the Authorization header set in the Headers tab.
(function () {
  "use strict";

  var httpUrl = window.location.origin + "/graphql";
  var wsUrl = httpUrl.replace(/^http/, "ws");
  var sockets = {}; // one graphql-ws client per Authorization value

  function socketFor(authorization) {
    if (!sockets[authorization]) {
      sockets[authorization] = graphqlWs.createClient({
        url: wsUrl,
        connectionParams: { Authorization: authorization },
        lazy: true,
      });
    }
    return sockets[authorization];
  }

  // The operation to run: GraphiQL's operationName can lag behind an edit for a moment, so a
  // name the document no longer has is dropped. Comments are ignored.
  function operation(params) {
    var source = params.query.replace(/#[^\n]*/g, "");
    var name = params.operationName;
    var named = name && new RegExp("\\b(query|mutation|subscription)\\s+" + name + "\\b");
    var match = named && named.exec(source);
    var kind = match ? match[1] : (/^\s*(subscription|mutation)?/.exec(source)[1] || "query");
    var request = { query: params.query, variables: params.variables };
    if (match) request.operationName = name;
    return { kind: kind, request: request };
  }

  function fetcher(params, options) {
    var op = operation(params);
    var headers = Object.assign({}, options && options.headers);
    var authorization = headers.Authorization || headers.authorization || "";
    if (op.kind === "subscription") {
      return socketFor(authorization).iterate(op.request);
    }
    headers["Content-Type"] = "application/json";
    return fetch(httpUrl, {
      method: "POST",
      headers: headers,
      body: JSON.stringify(op.request),
    }).then(function (response) {
      return response.json();
    });
  }

  var defaultQuery = [
    "# Set your company key in Headers below, then run an operation:",
    "#   { \"Authorization\": \"Bearer s2b_...\" }",
    "#",
    "# Watch a company's syncs live (replace the id with yours):",
    "subscription Live {",
    "  companySyncEvents(companyId: \"cmp_...\") {",
    "    eventId batchId itemId fromStatus toStatus error { code message hint }",
    "  }",
    "}",
    "",
  ].join("\n");

  ReactDOM.createRoot(document.getElementById("graphiql")).render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultQuery: defaultQuery,
      defaultHeaders: '{\n  "Authorization": "Bearer "\n}',
      defaultEditorToolsVisibility: "headers",
    })
  );
})();
