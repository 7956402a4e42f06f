#!/usr/bin/env python3
"""Regenerate the committed Greeter stubs in grpcpki/greeter/_proto/ from protos/helloworld.proto.

    python protos/generate.py            # rewrite the committed stubs
    python protos/generate.py --out DIR  # write them elsewhere (tests/test_stubs.py diffs the two)

Why the copy into a temporary tree: grpc_tools writes ``import helloworld_pb2`` in the
``_pb2_grpc`` module, relative to the ``-I`` root, which only works when the stub directory is
on sys.path (grpc/grpc#9575, wontfix). Placing the .proto at
``<tmp>/grpcpki/greeter/_proto/helloworld.proto`` and using ``-I <tmp>`` makes protoc emit
``from grpcpki.greeter._proto import helloworld_pb2`` itself: no post-processing regex to
maintain. Side effect (a welcome one): the descriptor registers as
``grpcpki/greeter/_proto/helloworld.proto``, so it cannot clash in the default descriptor pool
with another ``helloworld.proto`` an application already loaded. The wire format (package
``helloworld``, service ``Greeter``) is unchanged.

Needs grpcio-tools, pinned in the ``test`` extra: the stubs must be byte-identical to what that
exact version writes.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROTO = REPO / "protos" / "helloworld.proto"
PACKAGE = ("grpcpki", "greeter", "_proto")
STUB_DIR = REPO.joinpath(*PACKAGE)
GENERATED = ("helloworld_pb2.py", "helloworld_pb2.pyi", "helloworld_pb2_grpc.py")


def generate(out_dir: Path, proto: Path = PROTO) -> list[Path]:
    """Run protoc (from grpcio-tools) on *proto* and write the three stub files into *out_dir*."""
    from grpc_tools import protoc  # type: ignore[import-untyped]  # dev-only dependency

    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="grpcpki-protos-") as tmp:
        src_root = Path(tmp) / "src"
        gen_root = Path(tmp) / "gen"
        staged = src_root.joinpath(*PACKAGE, proto.name)
        staged.parent.mkdir(parents=True)
        gen_root.mkdir()
        shutil.copyfile(proto, staged)
        include = protoc._get_resource_file_name("grpc_tools", "_proto")  # well-known types
        args = [
            "grpc_tools.protoc",
            f"-I{src_root}",
            f"-I{include}",
            f"--python_out={gen_root}",
            f"--pyi_out={gen_root}",
            f"--grpc_python_out={gen_root}",
            # A disk path under an -I root: protoc maps it to the virtual name
            # grpcpki/greeter/_proto/helloworld.proto, which decides the import lines.
            str(staged),
        ]
        code = protoc.main(args)
        if code != 0:
            raise SystemExit(f"protoc failed with exit code {code}")
        written = []
        for name in GENERATED:
            target = out_dir / name
            shutil.copyfile(gen_root.joinpath(*PACKAGE, name), target)
            written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=STUB_DIR, help=f"output directory (default: {STUB_DIR})")
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
