#!/usr/bin/env bash
# Installs the real Fashion-MNIST files from Debian's dataset-fashion-mnist package (works offline of
# Keras' download servers). Elsewhere the trainer falls back to Keras' cache or download.
set -euo pipefail
target=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
if [ -f "$target" ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "note: no apt-get here; the trainer will use Keras' fashion_mnist download instead" >&2
  exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null; then sudo="sudo"; else
    echo "note: run 'apt-get install dataset-fashion-mnist' as root for offline Fashion-MNIST" >&2
    exit 0
  fi
fi
echo "installing Debian package dataset-fashion-mnist ..."
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq dataset-fashion-mnist >/dev/null
test -f "$target"
