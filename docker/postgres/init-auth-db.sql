-- Runs once, when the PostgreSQL volume is first initialised (docker-entrypoint-initdb.d).
-- MLflow's basic-auth app keeps its users and permissions in a database of its own, next to
-- the tracking database (POSTGRES_DB=mlflow) that the image's entrypoint creates.
CREATE DATABASE mlflow_auth OWNER mlflow;
