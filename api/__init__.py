"""The GraphQL API (Strawberry on Starlette) and the `sync2books` command line."""
