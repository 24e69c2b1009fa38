#!/usr/bin/env bash
# Creates the secret files deploy/compose.yaml reads, in deploy/secrets/: random keys and
# passwords, and the database URL that carries the PostgreSQL password. An existing file
# is kept (run it again safely); delete one to replace it. The folder is readable by its
# owner only; the files themselves are world-readable because compose bind-mounts each
# one into containers running as other users (UID 10001 for advocase).
# Keep ADVOCASE_MASTER_KEY safe and backed up apart from the database: without it the
# encrypted client data cannot be read.
set -euo pipefail
dir="${1:-$(dirname "$0")/secrets}"

random_secret() {  # 32 random bytes, URL-safe base64 (the form the app itself generates)
  python3 -c 'import base64, secrets; print(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("="))'
}

write() {  # name value
  local path="$dir/$1"
  if [[ -e "$path" ]]; then echo "kept    $path"; return; fi
  (umask 077; printf '%s\n' "$2" >"$path.new")
  chmod 0444 "$path.new"
  mv "$path.new" "$path"
  echo "created $path"
}

mkdir -p "$dir"
chmod 0700 "$dir"
write postgres_password "$(random_secret)"
write advocase_database_url \
  "postgresql://advocase:$(head -n1 "$dir/postgres_password")@postgres:5432/advocase"
write advocase_master_key "$(random_secret)"
write advocase_secret_key "$(random_secret)"
write minio_root_user "advocase-$(python3 -c 'import secrets; print(secrets.token_hex(6))')"
write minio_root_password "$(random_secret)"
