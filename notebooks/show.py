"""Print a stored notebook's text outputs and save its images: python -m notebooks.show 02 [DIR]."""

from __future__ import annotations

import base64
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else Path("/tmp")
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(HERE.glob(f"{argv[0]}*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        print(f"== {path.name}: built in {nb.metadata.get('build', {}).get('seconds')} s")
        for i, cell in enumerate(nb.cells):
            for j, o in enumerate(cell.get("outputs", [])):
                if o.output_type == "stream":
                    print(f"[{i}] {o.text.rstrip()}")
                elif "image/png" in o.get("data", {}):
                    png = out / f"{path.stem}_{i}_{j}.png"
                    png.write_bytes(base64.b64decode(o.data["image/png"]))
                    print(f"[{i}] image: {png}")
                elif "text/plain" in o.get("data", {}):
                    print(f"[{i}] {o.data['text/plain']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
