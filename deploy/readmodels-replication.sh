#!/bin/sh
# Runs once, when the read-model server's data directory is first made (the postgres
# image's /docker-entrypoint-initdb.d): lets its streaming standby connect for replication.
set -e
echo "host replication all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
