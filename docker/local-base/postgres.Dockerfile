# Local stand-in for postgres:16-bookworm (docker/local-base/build.sh): Debian's
# PostgreSQL 15 with an entrypoint that follows the official image's conventions
# (POSTGRES_USER, POSTGRES_DB, POSTGRES_PASSWORD[_FILE], /docker-entrypoint-initdb.d,
# data in /var/lib/postgresql/data, pg_isready on PATH).
ARG DEBIAN_IMAGE=algoperf-local/debian:bookworm
FROM ${DEBIAN_IMAGE}
ARG MIRROR=http://deb.debian.org/debian

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Not pinned: bookworm's point releases replace the versions (security fixes), so a pin
# would stop building; what Python and PostgreSQL this gives is recorded in the algoperf
# image (versions.json) and in PostgreSQL's log line.
# create_main_cluster=false: Debian's package would otherwise create a cluster at install
# time; the entrypoint creates one in the volume on first start instead.
# hadolint ignore=DL3008
RUN echo "deb ${MIRROR} bookworm main" > /etc/apt/sources.list \
 && mkdir -p /etc/postgresql-common/createcluster.d \
 && echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/no-main-cluster.conf \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15 \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/lib/postgresql/data /docker-entrypoint-initdb.d \
 && chown -R postgres:postgres /var/lib/postgresql

ENV PATH=/usr/lib/postgresql/15/bin:${PATH} \
    PGDATA=/var/lib/postgresql/data
COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
VOLUME /var/lib/postgresql/data
EXPOSE 5432
# SIGINT: PostgreSQL's fast shutdown (SIGTERM waits for every client to leave).
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["postgres"]
