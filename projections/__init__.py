"""Read models built from the event store: progress, load and audit (CQRS query side).

`ProjectionViews` opens the views for queries, status and read-your-writes waits;
`ProjectorRunner` keeps them up to date (one active process per projection, the others on
standby); `rebuild` builds fresh tables from the whole history and switches to them.
"""
