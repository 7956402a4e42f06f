#!/usr/bin/env python3
"""Regenerate the committed gRPC stubs from protos/ (see :data:`TARGETS`).

    python protos/generate.py            # rewrite the committed stubs
    python protos/generate.py --out DIR  # write them elsewhere, one folder per target (tests/test_stubs.py diffs)

Targets: the Greeter (protos/helloworld.proto -> grpcpki/greeter/_proto/) and the CA service
(protos/grpcpki/ca/v1/ca.proto -> grpcpki/caservice/_proto/).

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
CA_PROTO = REPO / "protos" / "grpcpki" / "ca" / "v1" / "ca.proto"
CA_PACKAGE = ("grpcpki", "caservice", "_proto")
CA_STUB_DIR = REPO.joinpath(*CA_PACKAGE)
CA_GENERATED = ("ca_pb2.py", "ca_pb2.pyi", "ca_pb2_grpc.py")
# proto file, package the stubs live in, the files protoc writes for it.
TARGETS: tuple[tuple[Path, tuple[str, ...], tuple[str, ...]], ...] = (
    (PROTO, PACKAGE, GENERATED),
    (CA_PROTO, CA_PACKAGE, CA_GENERATED),
)


def generate(out_dir: Path, proto: Path = PROTO, package: tuple[str, ...] = PACKAGE) -> list[Path]:
    """Run protoc (from grpcio-tools) on *proto* and write the three stub files into *out_dir*.

    The stubs are generated as if the proto lived in *package* (see above), whatever its path
    under protos/: the wire names (package, service) come from the proto itself.
    """
    from grpc_tools import protoc  # type: ignore[import-untyped]  # dev-only dependency

    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="grpcpki-protos-") as tmp:
        src_root = Path(tmp) / "src"
        gen_root = Path(tmp) / "gen"
        staged = src_root.joinpath(*package, proto.name)
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
        stem = proto.stem
        for name in (f"{stem}_pb2.py", f"{stem}_pb2.pyi", f"{stem}_pb2_grpc.py"):
            target = out_dir / name
            shutil.copyfile(gen_root.joinpath(*package, name), target)
            written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None,
                        help="output directory, one subfolder per target (default: the committed stub packages)")
    args = parser.parse_args(argv)
    for proto, package, _files in TARGETS:
        out = REPO.joinpath(*package) if args.out is None else args.out / package[1]
        for path in generate(out, proto, package):
            print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
