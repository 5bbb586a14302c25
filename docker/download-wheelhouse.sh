#!/usr/bin/env bash
# Download every wheel the image needs into a folder of the build context, for
# builds whose container cannot reach PyPI (or cannot verify its TLS):
#
#   docker/download-wheelhouse.sh [DEST] [REQUIREMENTS...]
#   docker build --build-arg PIP_WHEELHOUSE=wheelhouse ...
#
# DEST defaults to wheelhouse/ (relative to the repository root), the
# requirements to requirements.txt.
# Wheels are picked for the image's Python (CPython 3.11, manylinux x86_64),
# not the host's, so any host Python with pip will do (env PYTHON).
# Extra packages (e.g. a GPU TensorFlow) can be added with env EXTRA_PACKAGES.
# A stamp of the inputs makes a second call with the same inputs a no-op.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

dest="${1:-wheelhouse}"
shift || true
if (($# == 0)); then
    set -- requirements.txt
fi
python="${PYTHON:-python3}"
python_version="${WHEELHOUSE_PYTHON_VERSION:-3.11}"
abi="cp${python_version/./}"

for req in "$@"; do
    [[ -f "$req" ]] || {
        echo "no such requirements file: $req" >&2
        exit 1
    }
done

mkdir -p "$dest"
stamp="$dest/.inputs.sha256"
inputs="$(cat "$@"; echo "EXTRA_PACKAGES=${EXTRA_PACKAGES:-} python=$python_version")"
digest="$(printf '%s' "$inputs" | sha256sum | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$digest" ]]; then
    echo "wheelhouse $dest is up to date ($(find "$dest" -name '*.whl' | wc -l) wheels)"
    exit 0
fi

req_args=()
for req in "$@"; do req_args+=(-r "$req"); done
# shellcheck disable=SC2206  # EXTRA_PACKAGES is a space-separated list on purpose
extra=(${EXTRA_PACKAGES:-})

# Several manylinux tags: pip does not widen an explicit --platform by itself,
# and the wheels we need are tagged anywhere from manylinux2014 to 2_28.
"$python" -m pip download --quiet --dest "$dest" --only-binary=:all: \
    --implementation cp --python-version "$python_version" --abi "$abi" --abi abi3 --abi none \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux2010_x86_64 --platform manylinux1_x86_64 --platform any \
    "${req_args[@]}" "${extra[@]}" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
echo "$digest" >"$stamp"
echo "wheelhouse $dest: $(find "$dest" -name '*.whl' | wc -l) wheels, $(du -sh "$dest" | cut -f1)"
