#!/bin/sh
# One-shot setup of the MinIO that docker-compose.yml runs (its minio-setup service runs this in
# the minio/mc image): creates the bucket and lets browsers PUT parts straight to storage and
# read the ETag of each. Safe to run again.
#
# CORS: community MinIO has no per-bucket CORS API (PutBucketCors answers NotImplemented). There
# the server-wide MINIO_API_CORS_ALLOW_ORIGIN (set on the minio service) applies: for those
# origins it allows GET/PUT/HEAD/POST/DELETE with any request header and exposes ETag. The rule
# below is still applied where the server supports it (MinIO AIStor, other S3-compatible stores).
#
# Env: MINIO_ENDPOINT (default http://minio:9000), MINIO_ROOT_USER, MINIO_ROOT_PASSWORD,
#      PARTWAY_S3_BUCKET (default partway), CORS_ALLOWED_ORIGIN (comma-separated; default *).
set -eu

endpoint=${MINIO_ENDPOINT:-http://minio:9000}
bucket=${PARTWAY_S3_BUCKET:-partway}
origins=${CORS_ALLOWED_ORIGIN:-*}
: "${MINIO_ROOT_USER:?MINIO_ROOT_USER is not set}"
: "${MINIO_ROOT_PASSWORD:?MINIO_ROOT_PASSWORD is not set}"

say() { printf 'minio-setup: %s\n' "$*"; }

# The service waits for MinIO's healthcheck; still retry a little (credentials are checked here).
tries=0
until mc alias set store "$endpoint" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null 2>&1 &&
  mc ls store >/dev/null 2>&1; do
  tries=$((tries + 1))
  if [ "$tries" -ge 30 ]; then
    say "$endpoint does not answer or refuses the credentials:" >&2
    mc ls store >&2 || true
    exit 1
  fi
  sleep 2
done

mc mb --ignore-existing "store/$bucket"

cors_file=${TMPDIR:-/tmp}/partway-cors.xml
{
  echo '<CORSConfiguration>'
  echo '  <CORSRule>'
  old_ifs=$IFS
  IFS=,
  set -f # split on commas, but never glob: "*" is an origin here
  for origin in $origins; do
    origin=$(printf '%s' "$origin" | tr -d ' ')
    if [ -n "$origin" ]; then printf '    <AllowedOrigin>%s</AllowedOrigin>\n' "$origin"; fi
  done
  set +f
  IFS=$old_ifs
  echo '    <AllowedMethod>PUT</AllowedMethod>'
  echo '    <AllowedMethod>GET</AllowedMethod>'
  echo '    <AllowedMethod>HEAD</AllowedMethod>'
  echo '    <AllowedHeader>*</AllowedHeader>'
  echo '    <ExposeHeader>ETag</ExposeHeader>'
  echo '    <MaxAgeSeconds>3600</MaxAgeSeconds>'
  echo '  </CORSRule>'
  echo '</CORSConfiguration>'
} >"$cors_file"

if out=$(mc cors set "store/$bucket" "$cors_file" 2>&1); then
  say "bucket $bucket ready; per-bucket CORS rule set (PUT/GET/HEAD from $origins, ETag exposed)"
else
  # NotImplemented on community MinIO (or an mc without `cors`): the server-wide setting rules.
  say "bucket $bucket ready; no per-bucket CORS here ($(printf '%s' "$out" | head -n 1))"
  say "browsers are served by the server-wide MINIO_API_CORS_ALLOW_ORIGIN of the minio service"
fi
rm -f "$cors_file"
