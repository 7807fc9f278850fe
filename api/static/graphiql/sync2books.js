// GraphiQL for Sync2Books: queries and mutations over HTTP, subscriptions over
// graphql-transport-ws, authorised by the key given in the bar above it (kept in this tab's
// session storage only) or by an Authorization header set in the Headers tab. Until there is
// a key nothing is sent: no introspection, no operation; once there is, the schema loads.
(function () {
  "use strict";

  var KEY = "sync2books.graphiql.key";
  var NO_KEY =
    "No API key yet: enter it in the API key bar above (kept in this tab only), " +
    'or set {"Authorization": "Bearer s2b_..."} in Headers. Nothing was sent.';
  var httpUrl = window.location.origin + "/graphql";
  var wsUrl = httpUrl.replace(/^http/, "ws");
  var sockets = {}; // one graphql-ws client per Authorization value
  var root = ReactDOM.createRoot(document.getElementById("graphiql"));

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

  // The key in an Authorization header, if the Headers tab has one.
  function headerKey(headers) {
    var match = /^\s*Bearer\s+(\S+)\s*$/i.exec(headers.Authorization || headers.authorization || "");
    return match ? match[1] : "";
  }

  var currentKey = sessionStorage.getItem(KEY) || "";

  function fetcher(params, options) {
    var headers = Object.assign({}, options && options.headers);
    var given = headerKey(headers) || currentKey;
    if (!given) return Promise.resolve({ errors: [{ message: NO_KEY }] });
    delete headers.authorization;
    headers.Authorization = "Bearer " + given;
    if (!currentKey) setTimeout(useKey, 0, given); // a key from Headers: the schema loads too
    var op = operation(params);
    if (op.kind === "subscription") {
      return socketFor(headers.Authorization).iterate(op.request);
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
    "# Welcome to Sync2Books' GraphiQL.",
    "#",
    "# Your API key goes in the API key bar above",
    "# (kept in this tab only), or under Headers:",
    '#   {"Authorization": "Bearer s2b_..."}',
    "# Nothing is sent until there is one.",
    '# `sync2books create-company --name "Acme"`',
    "# prints a company's key.",
    "#",
    "# Then run this (the play button, or Ctrl-Enter);",
    "# the schema is under Docs, on the left.",
    "query MyCompany {",
    "  company {",
    "    id",
    "    name",
    "    lastEventId",
    "  }",
    "}",
    "",
  ].join("\n");

  // One fetcher throughout (a new one would introspect again); the schema prop is null, so
  // GraphiQL sends no introspection, until there is a key.
  function render() {
    root.render(
      React.createElement(GraphiQL, {
        fetcher: fetcher,
        schema: currentKey ? undefined : null,
        defaultQuery: defaultQuery,
        defaultEditorToolsVisibility: "headers",
      })
    );
    document.getElementById("forget-key").hidden = !currentKey;
    document.getElementById("key-state").textContent = currentKey
      ? "Key in use (kept in this tab only); the schema is under Docs."
      : "No key yet: nothing is sent until you give one. It is kept in this tab only.";
  }

  function useKey(key) {
    if (currentKey === key) return;
    currentKey = key;
    sessionStorage.setItem(KEY, key);
    render();
  }

  document.getElementById("key-bar").addEventListener("submit", function (event) {
    event.preventDefault();
    var input = document.getElementById("api-key");
    var key = input.value.trim().replace(/^Bearer\s+/i, "");
    input.value = "";
    if (key) useKey(key);
  });
  document.getElementById("forget-key").addEventListener("click", function () {
    currentKey = "";
    sessionStorage.removeItem(KEY);
    sockets = {};
    render();
  });

  render();
})();
