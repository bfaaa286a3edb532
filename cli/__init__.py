"""The `wes` command line: an entrypoint, like the HTTP API."""
