#!/bin/sh
# Entrypoint of the algoperf image: turns secret files into environment variables, then
# runs the command.
#
# Compose mounts each secret as a file under /run/secrets (docker/compose.yml). For every
# VAR below whose VAR_FILE is set, VAR gets the file's content, so no secret value is ever
# written in the compose file, the image, or `docker inspect`. (Ray reads its token file
# itself through RAY_AUTH_TOKEN_PATH, and PostgreSQL's image reads POSTGRES_PASSWORD_FILE.)
set -eu

for var in MLFLOW_AUTH_ADMIN_PASSWORD MLFLOW_FLASK_SERVER_SECRET_KEY MLFLOW_TRACKING_PASSWORD PGPASSWORD; do
    eval "file=\${${var}_FILE:-}"
    if [ -n "$file" ]; then
        if [ ! -r "$file" ] || [ ! -s "$file" ]; then
            echo "algoperf-entrypoint: ${var}_FILE=$file is missing, unreadable or empty;" \
                 "create it as docker/secrets/README.md says" >&2
            exit 64
        fi
        # $(...) drops the trailing newline an editor may have added to the file.
        eval "export ${var}=\"\$(cat \"\$file\")\""
        unset "${var}_FILE"
    fi
done

exec "$@"
