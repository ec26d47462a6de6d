# Local stand-in for python:3.11-slim-bookworm (docker/local-base/build.sh): Debian's
# Python 3.11 with venv and pip, and the CA bundle, on debootstrap's minimal bookworm.
ARG DEBIAN_IMAGE=algoperf-local/debian:bookworm
FROM ${DEBIAN_IMAGE}
ARG MIRROR=http://deb.debian.org/debian

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Not pinned: bookworm's point releases replace the versions (security fixes), so a pin
# would stop building; what Python and PostgreSQL this gives is recorded in the algoperf
# image (versions.json) and in PostgreSQL's log line.
# The mirror debootstrap used (plain http: apt checks the packages' signatures itself).
# hadolint ignore=DL3008
RUN echo "deb ${MIRROR} bookworm main" > /etc/apt/sources.list \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 python3-venv python-is-python3 ca-certificates \
 && rm -rf /var/lib/apt/lists/*

ENV PYTHONUNBUFFERED=1
CMD ["python3"]
