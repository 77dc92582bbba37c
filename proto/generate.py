"""Generate the Python modules of replication.proto: ``make proto``.

``python -m keyquorum.proto.generate`` writes replication_pb2.py, its .pyi and
replication_pb2_grpc.py beside the .proto; ``--check`` regenerates into a temporary
folder and fails when the committed modules differ, so a stale module cannot pass CI.

grpc_tools writes ``import replication_pb2`` into the gRPC module, a top-level
import that only works with proto/ on sys.path; the generated line is rewritten to
the package's own name, ``from keyquorum.proto import replication_pb2``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

HERE = Path(__file__).resolve().parent
PROTO = "replication.proto"
OUTPUTS = ("replication_pb2.py", "replication_pb2.pyi", "replication_pb2_grpc.py")
GENERATED_IMPORT = "import replication_pb2 as replication__pb2"
PACKAGE_IMPORT = "from keyquorum.proto import replication_pb2 as replication__pb2"


def generate(into: Path) -> None:
    """Run protoc on replication.proto, writing the three modules into ``into``."""
    arguments = [
        "protoc",
        f"-I{HERE}",
        f"--python_out={into}",
        f"--pyi_out={into}",
        f"--grpc_python_out={into}",
        str(HERE / PROTO),
    ]
    if protoc.main(arguments) != 0:
        raise RuntimeError(f"protoc failed on {HERE / PROTO}")

    grpc_module = into / "replication_pb2_grpc.py"
    text = grpc_module.read_text(encoding="utf-8")
    if GENERATED_IMPORT not in text:
        raise RuntimeError(f"grpc_tools no longer writes {GENERATED_IMPORT!r}; update generate.py")
    grpc_module.write_text(text.replace(GENERATED_IMPORT, PACKAGE_IMPORT), encoding="utf-8")


def stale_outputs() -> list[str]:
    """The committed modules that differ from a fresh generation (or are missing)."""
    with tempfile.TemporaryDirectory() as folder:
        fresh = Path(folder)
        generate(fresh)
        return [name for name in OUTPUTS
                if not (HERE / name).exists()
                or (HERE / name).read_bytes() != (fresh / name).read_bytes()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="fail if the committed modules are stale; write nothing")
    arguments = parser.parse_args()
    if arguments.check:
        stale = stale_outputs()
        if stale:
            print(f"stale: {', '.join(stale)}; run `make proto`", file=sys.stderr)
            return 1
        return 0
    generate(HERE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
