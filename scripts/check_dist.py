"""Build the sdist and the wheel, run ``twine check`` on them, and check that the
wheel holds the library alone: ``gql_observer`` with its ``py.typed``, its
metadata, and nothing else (no demo, no tests). Exits non-zero on any failure."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    with tempfile.TemporaryDirectory() as out:
        build = subprocess.run(
            [sys.executable, "-m", "build", "--outdir", out, str(ROOT)],
            capture_output=True,
            text=True,
        )
        if build.returncode:
            print(build.stdout, build.stderr, sep="\n", file=sys.stderr)
            return build.returncode
        if "BuildBackendWarning" in build.stderr or "deprecated" in build.stderr.lower():
            print(build.stderr, file=sys.stderr)
            print("check_dist: the build warns (see above)", file=sys.stderr)
            return 1
        built = sorted(Path(out).iterdir())
        twine = [sys.executable, "-m", "twine", "check", "--strict", *map(str, built)]
        subprocess.run(twine, check=True)
        (wheel,) = [p for p in built if p.suffix == ".whl"]
        names = zipfile.ZipFile(wheel).namelist()
        dist_info = next(n.split("/")[0] for n in names if ".dist-info/" in n)
        strays = [n for n in names if not n.startswith(("gql_observer/", f"{dist_info}/"))]
        problems = [f"not the library: {n}" for n in strays]
        if "gql_observer/py.typed" not in names:
            problems.append("gql_observer/py.typed is missing")
        metadata = zipfile.ZipFile(wheel).read(f"{dist_info}/METADATA").decode()
        if "License-Expression: BSD-3-Clause" not in metadata:
            problems.append("METADATA has no License-Expression: BSD-3-Clause")
        for problem in problems:
            print(f"check_dist: {problem}", file=sys.stderr)
        if problems:
            return 1
        print(f"check_dist: {wheel.name} holds gql_observer alone ({len(names)} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
