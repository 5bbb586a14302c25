"""Generates the Python gRPC code from protos/gan/v1/*.proto (run: python -m protos.generate).

The generated *_pb2*.py/.pyi files are build output: git ignores them and nobody edits them.
`--check` regenerates into a temporary folder and fails if the files here differ.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = REPO_ROOT / "protos" / "gan" / "v1"


def generate(out_dir: Path) -> list[Path]:
    """Runs protoc on every .proto file, writing modules importable as protos.gan.v1.*."""
    from grpc_tools import protoc  # build-time dependency only

    protos = sorted(PROTO_DIR.glob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"  # google/protobuf/*.proto
    args = [
        "protoc",
        f"-I{REPO_ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--pyi_out={out_dir}",
        *(str(p.relative_to(REPO_ROOT)) for p in protos),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed; see the message above")
    return protos


def check() -> int:
    """Returns 0 when the generated files here match a fresh generation."""
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        fresh_dir = Path(tmp) / "protos" / "gan" / "v1"
        stale = [
            f.name
            for f in sorted(fresh_dir.iterdir())
            if not (PROTO_DIR / f.name).exists() or not filecmp.cmp(f, PROTO_DIR / f.name, shallow=False)
        ]
    if stale:
        print(f"generated code is out of date: {', '.join(stale)}; run python -m protos.generate", file=sys.stderr)
        return 1
    print("generated code matches protos/")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="verify instead of writing")
    if parser.parse_args().check:
        return check()
    protos = generate(REPO_ROOT)
    print(f"generated Python code for {len(protos)} proto files in {PROTO_DIR.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
